//! A tiny DNS responder for tests: UDP on `127.0.0.1:0`, answering A and
//! AAAA from a table (`set`), failing names on demand (`fail`), or going
//! silent (`silence`) to make resolvers time out. Unknown names get
//! NXDOMAIN. It counts the questions it sees per name (`queries`). Its task
//! ends when the `TestDns` is dropped. No other DNS server is ever asked.
//!
//! Used by integration tests as `support::dns::TestDns` and by weir's own
//! unit tests (`proxy/upstream/dns/tests.rs`) through a `#[path]` module.
//! Only `tokio` and `hickory_resolver` (its `proto` re-export) are used.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::{RData, Record};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

pub use hickory_resolver::proto::op::ResponseCode as Rcode;
pub use hickory_resolver::proto::rr::RecordType;

/// The most distinct names counted in `queries`; further names are not
/// counted (a test never asks that many).
const MAX_COUNTED: usize = 1024;

enum Entry {
    Addrs { addrs: Vec<IpAddr>, ttl: u32 },
    Fail(ResponseCode),
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Per (name, type) failures, checked before `entries`.
    type_fails: HashMap<(String, RecordType), ResponseCode>,
    queries: HashMap<String, usize>,
    silent: bool,
}

/// A running responder; its task stops when this is dropped.
pub struct TestDns {
    pub addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    task: JoinHandle<()>,
}

/// `Api.Example.` → `api.example`: the table's key.
fn key(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

impl TestDns {
    /// Binds `127.0.0.1:0` and answers until dropped.
    pub async fn start() -> TestDns {
        let socket = UdpSocket::bind("127.0.0.1:0")
            .await
            .expect("bind the test DNS responder");
        let addr = socket.local_addr().expect("test DNS responder address");
        let table = Arc::new(Mutex::new(Table::default()));
        let task = tokio::spawn(serve(socket, table.clone()));
        TestDns { addr, table, task }
    }

    /// `"IP:PORT"` of the responder, as `[dns] servers` takes it.
    pub fn server(&self) -> String {
        self.addr.to_string()
    }

    /// Answers `name` with `addrs` (A for IPv4, AAAA for IPv6) and this TTL.
    pub fn set(&self, name: &str, addrs: Vec<IpAddr>, ttl_secs: u32) {
        self.table.lock().unwrap().entries.insert(
            key(name),
            Entry::Addrs {
                addrs,
                ttl: ttl_secs,
            },
        );
    }

    /// Answers every question about `name` with `rcode` (e.g.
    /// `Rcode::ServFail`, `Rcode::NXDomain`) and no records.
    pub fn fail(&self, name: &str, rcode: ResponseCode) {
        self.table
            .lock()
            .unwrap()
            .entries
            .insert(key(name), Entry::Fail(rcode));
    }

    /// Answers questions of type `qtype` (e.g. `RecordType::AAAA`) about
    /// `name` with `rcode`, while the other types answer from the table;
    /// `None` lifts it.
    pub fn fail_type(&self, name: &str, qtype: RecordType, rcode: Option<ResponseCode>) {
        let mut table = self.table.lock().unwrap();
        match rcode {
            Some(code) => table.type_fails.insert((key(name), qtype), code),
            None => table.type_fails.remove(&(key(name), qtype)),
        };
    }

    /// Forgets `name` (and its type failures): it gets NXDOMAIN again.
    pub fn remove(&self, name: &str) {
        let mut table = self.table.lock().unwrap();
        let name = key(name);
        table.entries.remove(&name);
        table.type_fails.retain(|(n, _), _| *n != name);
    }

    /// While `on`, questions are counted but never answered.
    pub fn silence(&self, on: bool) {
        self.table.lock().unwrap().silent = on;
    }

    /// How many questions about `name` (any type) arrived so far.
    pub fn queries(&self, name: &str) -> usize {
        let table = self.table.lock().unwrap();
        table.queries.get(&key(name)).copied().unwrap_or(0)
    }
}

impl Drop for TestDns {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(socket: UdpSocket, table: Arc<Mutex<Table>>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let Some(reply) = answer(&buf[..len], &table) else {
            continue;
        };
        let _ = socket.send_to(&reply, peer).await;
    }
}

/// The reply to one datagram, or `None` to stay silent.
fn answer(datagram: &[u8], table: &Mutex<Table>) -> Option<Vec<u8>> {
    let request = Message::from_vec(datagram).ok()?;
    if request.metadata.message_type != MessageType::Query {
        return None;
    }
    let mut reply = Message::response(request.metadata.id, request.metadata.op_code);
    reply.metadata.recursion_desired = request.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;

    let mut table = table.lock().unwrap();
    for query in &request.queries {
        let name = key(&query.name.to_ascii());
        let counted = table.queries.len();
        match table.queries.get_mut(&name) {
            Some(n) => *n += 1,
            None if counted < MAX_COUNTED => {
                table.queries.insert(name.clone(), 1);
            }
            None => {}
        }
        reply.add_query(query.clone());
        if let Some(code) = table.type_fails.get(&(name.clone(), query.query_type)) {
            reply.metadata.response_code = *code;
            continue;
        }
        match table.entries.get(&name) {
            None => reply.metadata.response_code = ResponseCode::NXDomain,
            Some(Entry::Fail(code)) => reply.metadata.response_code = *code,
            Some(Entry::Addrs { addrs, ttl }) => {
                for ip in addrs {
                    let wanted = match ip {
                        IpAddr::V4(_) => RecordType::A,
                        IpAddr::V6(_) => RecordType::AAAA,
                    };
                    if query.query_type == wanted {
                        reply.add_answer(Record::from_rdata(
                            query.name.clone(),
                            *ttl,
                            RData::from(*ip),
                        ));
                    }
                }
            }
        }
    }
    if table.silent {
        return None;
    }
    drop(table);
    reply.to_vec().ok()
}
