//! HTTP basic authentication against the web config's `basic_auth_users` (bcrypt hashes, as the
//! Prometheus exporter toolkit checks them).
//!
//! Owns: parsing the `Authorization` header, finding the user without revealing through timing which
//! names exist (every configured name is compared, in constant time, and an unknown name still costs a
//! bcrypt check against a decoy hash), running bcrypt off the async workers one check at a time (on one
//! thread started with the configuration, so nothing is spawned once the daemon runs under its seccomp
//! allow-list), and a bounded cache of successful checks so a scraper that sends the same credentials
//! every few seconds pays bcrypt once. The cache holds salted SHA-256 digests, never a password. Must
//! not know routes.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::{Mutex, mpsc},
};

use base64::Engine as _;
use hyper::header::HeaderValue;
use ring::digest::{SHA256, digest};

/// Successful checks remembered (a handful of scrapers and operators; the oldest goes first).
const CACHE_ENTRIES: usize = 64;
/// Checks waiting for the bcrypt thread; past this, a check fails at once (each waiting check is an open
/// connection's request, so the connection cap bounds them anyway).
const QUEUE: usize = 64;
/// Cost of the decoy hash checked for unknown users: the highest configured cost, within bounds.
const DECOY_COST: (u32, u32) = (4, 14);

type Digest = [u8; 32];

struct User {
    name: Digest,
    hash: String,
}

/// The configured users and the cache of successful checks.
pub struct BasicAuth {
    salt: [u8; 16],
    users: Vec<User>,
    decoy: String,
    cache: Mutex<Cache>,
    /// bcrypt is deliberately slow: one thread checks one password at a time, so failed attempts cost
    /// at most one core. The thread ends when this is dropped.
    bcrypt: mpsc::SyncSender<Job>,
    /// The thread's end of the queue until [`BasicAuth::start`] hands it to the thread: loading the
    /// configuration starts no thread (the daemon drops its privileges while it has only one).
    jobs: Mutex<Option<mpsc::Receiver<Job>>>,
}

/// A password, the hash to check it against, and where the answer goes.
type Job = (Vec<u8>, String, tokio::sync::oneshot::Sender<bool>);

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BasicAuth({} users)", self.users.len())
    }
}

#[derive(Default)]
struct Cache {
    set: HashSet<Digest>,
    order: VecDeque<Digest>,
}

impl Cache {
    fn insert(&mut self, d: Digest) {
        if !self.set.insert(d) {
            return;
        }
        self.order.push_back(d);
        while self.order.len() > CACHE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
    }
}

/// Equal bytes, in time that depends on the length only.
fn ct_eq(a: &Digest, b: &Digest) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

fn sha256(parts: &[&[u8]]) -> Digest {
    let mut buf = Vec::with_capacity(parts.iter().map(|p| p.len() + 8).sum());
    for p in parts {
        // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
        buf.extend_from_slice(&(p.len() as u64).to_le_bytes());
        buf.extend_from_slice(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, &buf).as_ref());
    out
}

/// `(user, password)` of a `Basic` authorization header.
pub fn parse_basic(h: &HeaderValue) -> Option<(Vec<u8>, Vec<u8>)> {
    let s = h.to_str().ok()?;
    let (scheme, rest) = s.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let colon = raw.iter().position(|&b| b == b':')?;
    Some((raw[..colon].to_vec(), raw[colon + 1..].to_vec()))
}

impl BasicAuth {
    /// Check every hash (an error names the user whose hash is not bcrypt) and make the decoy.
    pub fn new(users: &BTreeMap<String, String>) -> Result<BasicAuth, String> {
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| "basic_auth_users: no randomness for the cache salt".to_string())?;
        let mut max_cost = DECOY_COST.0;
        let mut out = Vec::with_capacity(users.len());
        for (name, hash) in users {
            let parts: bcrypt::HashParts = hash.parse().map_err(|e| {
                format!("basic_auth_users.{name}: not a bcrypt hash ($2y$COST$...): {e}")
            })?;
            max_cost = max_cost.max(parts.get_cost());
            out.push(User {
                name: sha256(&[&salt, name.as_bytes()]),
                hash: hash.clone(),
            });
        }
        let decoy = bcrypt::hash(salt, max_cost.min(DECOY_COST.1))
            .map_err(|e| format!("basic_auth_users: making the decoy hash: {e}"))?;
        let (bcrypt, jobs) = mpsc::sync_channel::<Job>(QUEUE);
        Ok(BasicAuth {
            salt,
            users: out,
            decoy,
            cache: Mutex::new(Cache::default()),
            bcrypt,
            jobs: Mutex::new(Some(jobs)),
        })
    }

    /// Start the bcrypt thread (once; later calls do nothing). Called when serving starts; a check
    /// made before that starts it too.
    pub fn start(&self) -> Result<(), String> {
        let Some(jobs) = self
            .jobs
            .lock()
            .map_err(|_| "basic_auth_users: lock poisoned")?
            .take()
        else {
            return Ok(());
        };
        std::thread::Builder::new()
            .name("famfs-http-auth".into())
            .spawn(move || {
                for (password, hash, answer) in jobs {
                    let _ = answer.send(bcrypt::verify(&password, &hash).unwrap_or(false));
                }
            })
            .map(drop)
            .map_err(|e| format!("basic_auth_users: starting the bcrypt thread: {e}"))
    }

    /// Whether `authorization` names a configured user with the right password.
    pub async fn check(&self, authorization: Option<&HeaderValue>) -> bool {
        let Some((user, password)) = authorization.and_then(parse_basic) else {
            return false;
        };
        let name = sha256(&[&self.salt, &user]);
        let mut found = None;
        for (i, u) in self.users.iter().enumerate() {
            if ct_eq(&name, &u.name) {
                found = Some(i);
            }
        }
        let key = sha256(&[&self.salt, b"cache", &user, &password]);
        if found.is_some() && self.cache.lock().is_ok_and(|c| c.set.contains(&key)) {
            return true;
        }
        let hash = match found {
            Some(i) => self.users[i].hash.clone(),
            None => self.decoy.clone(),
        };
        if let Err(e) = self.start() {
            log::warn!("basic auth: {e}");
            return false;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.bcrypt.try_send((password, hash, tx)).is_err() {
            log::warn!("basic auth: {QUEUE} checks already waiting for bcrypt; refusing this one");
            return false;
        }
        let verified = rx.await.unwrap_or(false);
        let ok = verified && found.is_some();
        if ok && let Ok(mut c) = self.cache.lock() {
            c.insert(key);
        }
        ok
    }

    /// Successful checks currently cached.
    pub fn cached(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.set.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(user: &str, pass: &str) -> HeaderValue {
        let b = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        HeaderValue::from_str(&format!("Basic {b}")).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn headers_parse_with_colons_in_passwords_and_any_scheme_case() {
        assert_eq!(
            parse_basic(&header("prom", "a:b:c")),
            Some((b"prom".to_vec(), b"a:b:c".to_vec()))
        );
        let b = base64::engine::general_purpose::STANDARD.encode("u:p");
        let h = HeaderValue::from_str(&format!("bAsIc {b}")).unwrap();
        assert_eq!(parse_basic(&h), Some((b"u".to_vec(), b"p".to_vec())));
        for bad in ["Bearer abc", "Basic !!!", "Basic", "Basic dXNlcg=="] {
            assert_eq!(parse_basic(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn right_passwords_pass_and_are_cached_wrong_ones_and_unknown_users_fail() {
        let users: BTreeMap<String, String> = [
            ("prom".to_string(), bcrypt::hash("s3cret", 4).unwrap()),
            ("ops".to_string(), bcrypt::hash("other", 4).unwrap()),
        ]
        .into();
        let a = BasicAuth::new(&users).unwrap();
        let rt = rt();
        let check = |u: &str, p: &str| rt.block_on(a.check(Some(&header(u, p))));
        assert!(!check("prom", "wrong"));
        assert_eq!(a.cached(), 0);
        assert!(check("prom", "s3cret"));
        assert_eq!(a.cached(), 1);
        assert!(check("prom", "s3cret"));
        assert_eq!(a.cached(), 1);
        // Another user's password is not this user's.
        assert!(!check("ops", "s3cret"));
        assert!(check("ops", "other"));
        assert!(!check("nobody", "s3cret"));
        assert!(!check("", ""));
        assert!(!rt.block_on(a.check(None)));
        assert_eq!(a.cached(), 2);
    }

    #[test]
    fn hashes_made_by_other_tools_verify() {
        // The README's example, made by libxcrypt's crypt(3) ($2b$, cost 10).
        let users: BTreeMap<String, String> = [(
            "prometheus".to_string(),
            "$2b$10$fbg9e7tue./qSGQ9mg1C2OuQK6tpaRKYyumPka4r4fc38aVKtq8P6".to_string(),
        )]
        .into();
        let a = BasicAuth::new(&users).unwrap();
        let rt = rt();
        assert!(rt.block_on(a.check(Some(&header("prometheus", "example-password")))));
        assert!(!rt.block_on(a.check(Some(&header("prometheus", "example")))));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = Cache::default();
        for i in 0..(CACHE_ENTRIES as u8 + 10) {
            c.insert([i; 32]);
        }
        assert_eq!((c.set.len(), c.order.len()), (CACHE_ENTRIES, CACHE_ENTRIES));
        assert!(!c.set.contains(&[0; 32]));
        assert!(c.set.contains(&[CACHE_ENTRIES as u8 + 9; 32]));
    }

    #[test]
    fn a_hash_that_is_not_bcrypt_names_the_user() {
        let users: BTreeMap<String, String> =
            [("prom".to_string(), "plaintext".to_string())].into();
        let e = BasicAuth::new(&users).unwrap_err();
        assert!(
            e.starts_with("basic_auth_users.prom: not a bcrypt hash"),
            "{e}"
        );
    }
}
