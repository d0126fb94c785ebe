//! The least a REST job service can do, as a yardstick for end-to-end
//! latency on a given machine (`scripts/profile.sh floor` runs it beside
//! Jobs under the harness's own e2e client).
//!
//! `rest_floor api ADDR` serves the harness's REST contract and nothing more:
//! `POST /jobs` is one round trip to Redis (HSET + XADD, pipelined) and
//! answers `{"jid": n}`; `GET /jobs/{n}` is one HGET. `rest_floor worker`
//! waits on the stream and marks each job finished in one round trip: no
//! claim, no RUNNING state, no lease, no validation, no indexes. A real
//! service can only be slower; how much slower is what the comparison shows.
//!
//! Redis is `REDIS_URL` (`redis://host:port` only); keys are under
//! `JOBS_KEY_PREFIX` (default `floor`). Blocking std sockets, a thread per
//! connection: no runtime between the socket and the work.

use std::{
    io::{self, BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    sync::atomic::{AtomicU64, Ordering},
};

const SUCCESS: &str = "FINISHED -- SUCCESS";

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let redis_addr = redis_addr()?;
    let prefix = std::env::var("JOBS_KEY_PREFIX").unwrap_or_else(|_| "floor".to_owned());
    match args.as_slice() {
        [mode, addr] if mode == "api" => api(addr, &redis_addr, &prefix),
        [mode] if mode == "worker" => worker(&redis_addr, &prefix),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "usage: rest_floor api HOST:PORT | rest_floor worker",
        )),
    }
}

/// `host:port` from `REDIS_URL` (default 127.0.0.1:6379).
fn redis_addr() -> io::Result<String> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    url.strip_prefix("redis://")
        .map(|rest| rest.trim_end_matches('/').to_owned())
        .filter(|rest| !rest.contains(['@', '/']))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("REDIS_URL {url:?}: only redis://host:port is understood here"),
            )
        })
}

/// One Redis connection: commands out, RESP replies in.
struct Redis {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A RESP reply, as far as this program needs one.
enum Reply {
    Text(Option<String>),
    Integer,
    Array(Option<Vec<Reply>>),
}

impl Redis {
    fn connect(addr: &str) -> io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends the commands in one write, then reads one reply for each.
    fn pipeline(&mut self, commands: &[&[&str]]) -> io::Result<Vec<Reply>> {
        let mut out = Vec::new();
        for command in commands {
            out.extend_from_slice(format!("*{}\r\n", command.len()).as_bytes());
            for arg in *command {
                out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
            }
        }
        self.writer.write_all(&out)?;
        commands.iter().map(|_| self.reply()).collect()
    }

    fn reply(&mut self) -> io::Result<Reply> {
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let line = line.trim_end();
        let (kind, rest) = line.split_at(line.len().min(1));
        let count = || {
            rest.parse::<i64>()
                .map_err(|_| io::Error::other(format!("bad RESP line {line:?}")))
        };
        match kind {
            "+" => Ok(Reply::Text(Some(rest.to_owned()))),
            ":" => Ok(Reply::Integer),
            "-" => Err(io::Error::other(format!("Redis: {rest}"))),
            "$" => match usize::try_from(count()?) {
                Err(_) => Ok(Reply::Text(None)),
                Ok(len) => {
                    let mut bytes = vec![0; len + 2];
                    self.reader.read_exact(&mut bytes)?;
                    bytes.truncate(len);
                    Ok(Reply::Text(Some(
                        String::from_utf8_lossy(&bytes).into_owned(),
                    )))
                }
            },
            "*" => match usize::try_from(count()?) {
                Err(_) => Ok(Reply::Array(None)),
                Ok(len) => (0..len)
                    .map(|_| self.reply())
                    .collect::<io::Result<_>>()
                    .map(|items| Reply::Array(Some(items))),
            },
            _ => Err(io::Error::other(format!("bad RESP line {line:?}"))),
        }
    }
}

fn api(addr: &str, redis_addr: &str, prefix: &str) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    for stream in listener.incoming() {
        let stream = stream?;
        let redis = Redis::connect(redis_addr)?;
        let prefix = prefix.to_owned();
        std::thread::spawn(move || {
            // A connection ends with its client; nothing to report.
            let _ = serve(stream, redis, &prefix);
        });
    }
    Ok(())
}

/// A new job id without a round trip: this process's start time and a count.
fn next_jid() -> String {
    static STARTED: std::sync::OnceLock<u128> = std::sync::OnceLock::new();
    static COUNT: AtomicU64 = AtomicU64::new(0);
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_nanos())
    });
    format!("{started}-{}", COUNT.fetch_add(1, Ordering::Relaxed))
}

/// Serves one keep-alive connection until the client closes it.
fn serve(stream: TcpStream, mut redis: Redis, prefix: &str) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        let mut body_len = 0;
        loop {
            let mut header = String::new();
            reader.read_line(&mut header)?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                body_len = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; body_len];
        reader.read_exact(&mut body)?;
        let mut words = request_line.split_whitespace();
        let (status, json) = match (words.next(), words.next()) {
            (Some("POST"), Some("/jobs")) => {
                let jid = next_jid();
                let key = format!("{prefix}:floor:job:{jid}");
                let queue = format!("{prefix}:floor:queue");
                redis.pipeline(&[
                    &["HSET", &key, "status", "QUEUED"],
                    &["XADD", &queue, "*", "jid", &jid],
                ])?;
                ("201 Created", format!(r#"{{"jid":"{jid}"}}"#))
            }
            (Some("GET"), Some(path)) if path.starts_with("/jobs/") => {
                let jid = &path["/jobs/".len()..];
                let key = format!("{prefix}:floor:job:{jid}");
                match redis.pipeline(&[&["HGET", &key, "status"]])?.pop() {
                    Some(Reply::Text(Some(status))) => (
                        "200 OK",
                        format!(r#"{{"jid":"{jid}","status":"{status}"}}"#),
                    ),
                    _ => ("404 Not Found", r#"{"detail":"no such job"}"#.to_owned()),
                }
            }
            _ => ("404 Not Found", r#"{"detail":"no such route"}"#.to_owned()),
        };
        write!(
            writer,
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        )?;
    }
}

fn worker(redis_addr: &str, prefix: &str) -> io::Result<()> {
    let mut redis = Redis::connect(redis_addr)?;
    let queue = format!("{prefix}:floor:queue");
    // Entries after this id are new. From the start of the stream: `$`
    // would stand for "after now" at every read that timed out, and miss a
    // job queued between two reads. Jobs of an earlier run are marked
    // finished again, which changes nothing.
    let mut last = "0-0".to_owned();
    loop {
        let read = redis.pipeline(&[&[
            "XREAD", "COUNT", "100", "BLOCK", "1000", "STREAMS", &queue, &last,
        ]])?;
        let mut done = Vec::new();
        for (id, jid) in stream_entries(read) {
            last = id;
            done.push(format!("{prefix}:floor:job:{jid}"));
        }
        if done.is_empty() {
            continue;
        }
        let commands: Vec<[&str; 4]> = done
            .iter()
            .map(|key| ["HSET", key.as_str(), "status", SUCCESS])
            .collect();
        let commands: Vec<&[&str]> = commands.iter().map(|c| c.as_slice()).collect();
        redis.pipeline(&commands)?;
    }
}

/// (entry id, jid) pairs of an XREAD reply over one stream.
fn stream_entries(replies: Vec<Reply>) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for reply in replies {
        let Reply::Array(Some(streams)) = reply else {
            continue;
        };
        for stream in streams {
            let Reply::Array(Some(mut parts)) = stream else {
                continue;
            };
            let Some(Reply::Array(Some(entries))) = parts.pop() else {
                continue;
            };
            for entry in entries {
                let Reply::Array(Some(mut entry)) = entry else {
                    continue;
                };
                let (Some(Reply::Array(Some(fields))), Some(Reply::Text(Some(id)))) =
                    (entry.pop(), entry.pop())
                else {
                    continue;
                };
                // Fields come as name, value, name, value...
                let jid = fields.chunks(2).find_map(|pair| match pair {
                    [Reply::Text(Some(name)), Reply::Text(Some(value))] if name == "jid" => {
                        Some(value.clone())
                    }
                    _ => None,
                });
                if let Some(jid) = jid {
                    pairs.push((id, jid));
                }
            }
        }
    }
    pairs
}
