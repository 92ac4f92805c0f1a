//! A Unix-socket proxy in front of a server that can swallow a reply: the client's
//! statement reaches the server and runs, but the answer never comes back and the
//! connection drops, as when a network fails at the wrong moment.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub struct Proxy {
    pub socket_dir: PathBuf,
    swallow: Arc<AtomicBool>,
}

impl Proxy {
    /// Listen in `socket_dir` with the server's port number, forwarding to the
    /// server's socket in `server_socket_dir`.
    pub fn start(socket_dir: &Path, server_socket_dir: &Path, port: u16) -> Proxy {
        std::fs::create_dir_all(socket_dir).expect("proxy socket folder");
        let listen_path = socket_dir.join(format!(".s.PGSQL.{port}"));
        let _ = std::fs::remove_file(&listen_path);
        let listener = UnixListener::bind(&listen_path).expect("bind the proxy socket");
        let server_path = server_socket_dir.join(format!(".s.PGSQL.{port}"));
        let swallow = Arc::new(AtomicBool::new(false));
        let flag = swallow.clone();
        thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let server = UnixStream::connect(&server_path).expect("reach the server");
                let (client_in, server_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                thread::spawn(move || copy(client_in, server_out, None));
                let flag = flag.clone();
                thread::spawn(move || copy(server, client, Some(flag)));
            }
        });
        Proxy {
            socket_dir: socket_dir.to_owned(),
            swallow,
        }
    }

    /// From now on, drop what the server answers and then cut the connection.
    pub fn swallow_next_reply(&self) {
        self.swallow.store(true, Ordering::SeqCst);
    }
}

fn copy(mut from: UnixStream, mut to: UnixStream, swallow: Option<Arc<AtomicBool>>) {
    let mut buffer = [0u8; 8192];
    loop {
        let read = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if let Some(flag) = &swallow {
            if flag.swap(false, Ordering::SeqCst) {
                // The server has answered, so it has run (and committed) the
                // statement; the client never hears of it.
                thread::sleep(Duration::from_millis(50));
                let _ = to.shutdown(std::net::Shutdown::Both);
                let _ = from.shutdown(std::net::Shutdown::Both);
                break;
            }
        }
        if to.write_all(&buffer[..read]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Write);
}
