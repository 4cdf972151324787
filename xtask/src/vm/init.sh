#!/bin/busybox sh
# The VM lane's guest /init (xtask/src/vm/init.sh, embedded by initramfs.rs with include_str!).
# Prints `VM ...` progress, the checks' `RESULT`/`CHECK` lines, `VMTEST EXIT <check> <rc>` per check,
# `PROBE ...` (the probe table), `METRIC ...` (the first daemon's /metrics) and, from
# `xtask vm-guest famfs`, `FMETRIC ...` (the famfs-serving daemon's /metrics), then powers off.
# Waits are bounded polls on real state.
# One placeholder, METRIC_FAMILIES between at-signs, replaced when the initramfs is built
# (initramfs.rs, `render_init`) by the ERE alternation of the metric families the host asserts on,
# named by famfs_common::metric_names.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin RUST_LOG=warn
up() { cut -d' ' -f1 /proc/uptime; }
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
echo "VM kernel $(uname -r)"
for m in $(cat /lib/modules/order); do
  insmod /lib/modules/$m.ko || echo "VM module-failed $m"
done
# Poll (bounded) for the pmem block device: probing may finish after insmod returns.
i=0; while [ ! -b /dev/pmem0 ] && [ $i -lt 200 ]; do i=$((i+1)); usleep 50000; done
if [ -b /dev/pmem0 ] \
  && /sbin/mke2fs -q -t ext4 -b 4096 -E stride=512,stripe_width=512 /dev/pmem0 \
  && mount -t ext4 -o dax /dev/pmem0 /mnt/dax; then
  echo "VM dax-mounted $(grep ' /mnt/dax ' /proc/mounts)"
else
  echo "VM dax-failed"
fi
if squashfuse /fuse.sqfs /mnt/fuse; then echo "VM fuse-mounted"; else echo "VM fuse-failed"; fi
ip link set lo up

set -- $(stat -c '%t %T' /dev/pmem0)
DAXDEV=$(( (0x$1 << 20) | 0x$2 ))
FUSECONN=$(awk '$5=="/mnt/fuse" { split($3, a, ":"); print a[2] }' /proc/self/mountinfo)
echo "VM devices dax=$DAXDEV fuse=$FUSECONN"
echo "VM timing mounts end=$(up)"

echo "VM timing boot end=$(up)"
famfs-trace probes | sed 's/^/PROBE /'
echo "VM timing probes end=$(up)"

# The daemon watches the DAX device and the FUSE connection for the whole run; scraped at the end.
famfs-daemon run --listen 127.0.0.1:0 --connection $DAXDEV --connection $FUSECONN >/tmp/daemon.out 2>/tmp/daemon.err &
DPID=$!
i=0; while ! grep -q 'famfs-daemon: ready' /tmp/daemon.out && [ $i -lt 600 ]; do i=$((i+1)); usleep 50000; done
ADDR=$(sed -n 's/.*listen=\([^ ]*\).*/\1/p' /tmp/daemon.out)
echo "VM daemon addr=$ADDR"
echo "VM timing daemon-ready end=$(up)"

run() { name=$1; shift; t0=$(up); "$@"; rc=$?; echo "VMTEST EXIT $name $rc"; echo "VM timing $name start=$t0 end=$(up)"; }
run dax famfs-trace selftest dax --dir /mnt/dax
run kfuncs-fentry famfs-trace selftest kfuncs --dir /mnt/dax --fuse-dir /mnt/fuse --mode fentry
run kfuncs-kprobe famfs-trace selftest kfuncs --dir /mnt/dax --fuse-dir /mnt/fuse --mode kprobe
run fuse-auto famfs-trace selftest fuse --fuse-dir /mnt/fuse --pairing auto
run fuse-unique famfs-trace selftest fuse --fuse-dir /mnt/fuse --pairing unique

if wget -q -O /tmp/metrics "http://$ADDR/metrics"; then
  grep -E '^(@METRIC_FAMILIES@)' /tmp/metrics | sed 's/^/METRIC /'
else
  echo "VM metrics-failed"
fi
kill $DPID; wait $DPID; echo "VMTEST EXIT daemon $?"
grep -i -e warn -e error -e panick /tmp/daemon.err | sed 's/^/VM daemon-stderr /' | head -20
echo "VM timing daemon-stopped end=$(up)"

# Our own famfs FUSE server with its probes on this kernel (see xtask/src/vm/guest.rs).
run famfs xtask vm-guest famfs
umount /mnt/fuse
echo "VM done"
poweroff -f
