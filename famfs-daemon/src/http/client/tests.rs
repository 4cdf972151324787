//! The client against canned answers from a loopback server: bodies by length and chunked, statuses,
//! truncated and malformed answers, a server that never answers, a refused connection, the body cap,
//! and what the request looks like on the wire.

use std::{
    io::{Read, Write},
    net::TcpListener,
    sync::mpsc,
};

use super::*;

/// A server that takes one connection, reports the request head it read and answers `answer` (then
/// closes; with `None` it keeps the connection open without answering until the test ends).
fn serve_once(answer: Option<&'static [u8]>) -> (SocketAddr, mpsc::Receiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && s.read(&mut b).unwrap_or(0) == 1 {
            head.push(b[0]);
        }
        let _ = tx.send(String::from_utf8_lossy(&head).into_owned());
        match answer {
            Some(a) => {
                let _ = s.write_all(a);
            }
            // Hold the connection until the client gives up and closes it.
            None => {
                let _ = s.read(&mut b);
            }
        }
    });
    (addr, rx)
}

fn client(addr: SocketAddr) -> Client {
    Client::new(addr, Duration::from_secs(20)).unwrap()
}

#[test]
fn bodies_by_length_and_chunked() {
    let (addr, head) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"));
    assert_eq!(
        client(addr)
            .fetch("/x?a=1", Some("application/json"))
            .unwrap(),
        Response {
            status: 200,
            body: "hello".into()
        }
    );
    let head = head.recv().unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /x?a=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("host: {addr}\r\n")), "{head}");
    assert!(head.contains("accept: application/json\r\n"), "{head}");

    let (addr, _) = serve_once(Some(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
    ));
    assert_eq!(client(addr).get("/x").unwrap(), "abcde");
}

#[test]
fn statuses_and_broken_answers_name_address_and_path() {
    let (addr, _) = serve_once(Some(
        b"HTTP/1.1 400 Bad Request\r\nContent-Length: 9\r\n\r\nbad sort\n",
    ));
    let c = client(addr);
    assert_eq!(
        c.get("/api/v1/files?sort=x").unwrap_err().to_string(),
        format!("{addr}: GET /api/v1/files?sort=x: HTTP 400: bad sort")
    );

    let (addr, _) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort"));
    let e = client(addr).get("/m").unwrap_err();
    assert!(matches!(e, ClientError::Request { .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.starts_with(&format!("{addr}: GET /m: reading the body: ")),
        "{text}"
    );

    let (addr, _) = serve_once(Some(b"garbage\r\n\r\n"));
    let text = client(addr).get("/m").unwrap_err().to_string();
    assert!(text.starts_with(&format!("{addr}: GET /m: ")), "{text}");

    let (addr, _) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n[1,x"));
    let e = client(addr).get_json::<Vec<u32>>("/j").unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{addr}: GET /j: expected value at line 1 column 4")
    );
    let (addr, _) = serve_once(Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n\xff\xfe",
    ));
    assert_eq!(
        client(addr).get("/b").unwrap_err().to_string(),
        format!("{addr}: GET /b: body is not UTF-8 (byte 0)")
    );
}

#[test]
fn bodies_past_the_cap_are_refused() {
    let (addr, _) = serve_once(Some(
        b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n0123456789ab",
    ));
    let c = client(addr).with_max_body(10);
    assert_eq!(
        c.get("/big").unwrap_err().to_string(),
        format!("{addr}: GET /big: body larger than 10 bytes")
    );
}

#[test]
fn a_silent_server_times_out_and_a_closed_port_is_refused() {
    let (addr, head) = serve_once(None);
    let c = Client::new(addr, Duration::from_millis(300)).unwrap();
    assert_eq!(
        c.get("/slow").unwrap_err().to_string(),
        format!("{addr}: GET /slow: timed out")
    );
    assert!(head.recv().unwrap().starts_with("GET /slow "));

    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(
        client(addr).get("/x").unwrap_err().to_string(),
        format!("127.0.0.1:{port}: connection refused")
    );
}
