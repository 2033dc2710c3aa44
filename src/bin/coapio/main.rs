//! `coapio`: a CoAP command-line client and file server (feature `cli`).
//!
//! ```text
//! coapio get coap://[::1]/.well-known/core
//! coapio put coap://[::1]/notes.txt --payload-file notes.txt --content-format text
//! coapio observe coap://[::1]/clock --count 5
//! coapio discover --interface eth0
//! coapio serve ./public --bind [::]:5683 --write
//! ```
//!
//! The files: `client.rs` (every call into the library's client API), `render.rs` (how
//! responses are shown), `cbor.rs` (CBOR diagnostic notation), `options.rs` (reading and
//! writing option values), `progress.rs` (bars and counters), `credentials.rs` (aiocoap's
//! credentials files), `serve.rs` (the file server).

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, Parser, Subcommand};

use coapio::message::{Code, OptionNumber};

mod cbor;
mod client;
mod credentials;
mod options;
mod progress;
mod render;
mod serve;

use client::{Client, Failure, ObserveEnd, Security, Spec, Tuning};
use progress::Progress;
use render::Output;

/// The exit statuses, for `--help` and the README (a test keeps them equal).
macro_rules! exit_status {
    () => {
        "\
Exit status:
  0  every response was a success (2.xx)
  1  the server answered with an error (4.xx or 5.xx)
  2  usage: bad arguments, a malformed URI, a feature this build lacks
  3  no response: timeout, Reset, network error (unreachable), name not resolved
  4  local error: a file that cannot be read or written, a socket that cannot be opened"
    };
}

/// The exit statuses, after a command's help.
const EXIT_STATUS: &str = exit_status!();

/// Examples and exit statuses, for the top-level `--help`.
const EXAMPLES_AND_EXIT_STATUS: &str = concat!(
    "\
Examples:
  coapio get coap://[::1]/.well-known/core
  coapio put coap://[::1]/notes.txt -f notes.txt -c text
  coapio get coap://[::1]/big.bin -o big.bin
  coapio observe coap://[::1]/clock --count 5 --json
  coapio discover --interface eth0
  coapio serve ./public --write

",
    exit_status!()
);

const EXIT_ERROR_RESPONSE: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_NO_RESPONSE: u8 = 3;
const EXIT_LOCAL: u8 = 4;

/// A CoAP (RFC 7252) client and file server.
#[derive(Debug, Parser)]
#[command(name = "coapio", version, after_help = EXAMPLES_AND_EXIT_STATUS, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// GET a resource.
    #[command(after_help = EXIT_STATUS)]
    Get(RequestArgs),
    /// PUT a payload to a resource (create or replace).
    #[command(after_help = EXIT_STATUS)]
    Put(RequestArgs),
    /// POST a payload to a resource.
    #[command(after_help = EXIT_STATUS)]
    Post(RequestArgs),
    /// DELETE a resource.
    #[command(after_help = EXIT_STATUS)]
    Delete(RequestArgs),
    /// FETCH a resource (RFC 8132): a GET with a payload.
    #[command(after_help = EXIT_STATUS)]
    Fetch(RequestArgs),
    /// PATCH a resource (RFC 8132).
    #[command(after_help = EXIT_STATUS)]
    Patch(RequestArgs),
    /// iPATCH a resource (RFC 8132): an idempotent PATCH.
    #[command(after_help = EXIT_STATUS)]
    Ipatch(RequestArgs),
    /// Observe a resource (RFC 7641): print it and every change, until --count or
    /// --duration, the server ends it, or Ctrl-C.
    #[command(after_help = EXIT_STATUS)]
    Observe(ObserveArgs),
    /// Ask every CoAP server on a link (multicast, All-CoAP-Nodes) and print each answer
    /// with its server's address.
    #[command(after_help = EXIT_STATUS)]
    Discover(DiscoverArgs),
    /// Serve the files of a directory: GET (with ETag, block-wise), directory listings in
    /// link format, observation of files and directories, PUT and DELETE with --write.
    #[command(
        after_help = "Runs until it is killed. Exit status: 2 when DIR is not a directory or \
                      the interface does not exist, 4 when the address cannot be bound."
    )]
    Serve(serve::ServeArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// How responses are shown.
#[derive(Debug, Args)]
struct OutputArgs {
    /// Show the options, the server's address and the time taken; twice, also the
    /// library's log.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Print each response as one JSON object per line (code, options, payload as text or
    /// base64, source address).
    #[arg(long, conflicts_with_all = ["raw", "pretty"])]
    json: bool,
    /// Write the payload's bytes as they came, also on a terminal.
    #[arg(long)]
    raw: bool,
    /// Render the payload by its Content-Format also when stdout is not a terminal.
    #[arg(long, conflicts_with = "raw")]
    pretty: bool,
    /// Draw no progress bar or counter.
    #[arg(long)]
    no_progress: bool,
}

/// Credentials for `coaps://` (DTLS) and OSCORE.
#[derive(Debug, Args)]
struct SecurityArgs {
    /// DTLS pre-shared key identity (with --psk-key; needs the `dtls` feature).
    #[arg(long, value_name = "TEXT")]
    psk_identity: Option<String>,
    /// DTLS pre-shared key (with --psk-identity; needs the `dtls` feature).
    #[arg(long, value_name = "TEXT")]
    psk_key: Option<String>,
    /// DTLS client certificate, PEM (with --key; needs the `dtls` feature).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,
    /// DTLS client private key, PEM (with --cert; needs the `dtls` feature).
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Certificate authorities, PEM, that the server's certificate must chain to (needs the
    /// `dtls` feature).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Protect requests with the OSCORE security context in DIR, aiocoap's format
    /// (settings.json, secret.json, sequence.json; needs the `oscore` feature).
    #[arg(long, value_name = "DIR")]
    oscore: Option<PathBuf>,
    /// Credentials by URI pattern in aiocoap's JSON format (dtls pre-shared keys and oscore
    /// directories; see the README).
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
}

impl SecurityArgs {
    fn security(&self) -> Security {
        Security {
            psk_identity: self.psk_identity.clone(),
            psk_key: self.psk_key.clone(),
            cert: self.cert.clone(),
            key: self.key.clone(),
            ca: self.ca.clone(),
            oscore: self.oscore.clone(),
            credentials: self.credentials.clone(),
        }
    }
}

/// A request's arguments.
#[derive(Debug, Args)]
struct RequestArgs {
    /// The resource: coap://host[:port]/path?query (coaps:// with DTLS).
    uri: String,
    /// The payload, as text.
    #[arg(
        long,
        short = 'p',
        value_name = "TEXT",
        conflicts_with = "payload_file"
    )]
    payload: Option<String>,
    /// The payload from FILE (`-`: standard input).
    #[arg(long, short = 'f', value_name = "FILE")]
    payload_file: Option<PathBuf>,
    /// The payload's Content-Format: a number, a media type or a short name (text, json,
    /// cbor, link-format, octet-stream, …).
    #[arg(long, short = 'c', value_name = "FORMAT", value_parser = options::content_format)]
    content_format: Option<coapio::message::ContentFormat>,
    /// The Content-Format wanted in the response (as --content-format).
    #[arg(long, short = 'A', value_name = "FORMAT", value_parser = options::content_format)]
    accept: Option<coapio::message::ContentFormat>,
    /// An option, NUMBER=VALUE or Name=VALUE (repeatable): the value is read as the option's
    /// format says (a number or text), `0x…` as bytes.
    #[arg(short = 'O', long = "option", value_name = "NUMBER=VALUE", value_parser = options::option)]
    options: Vec<(OptionNumber, Vec<u8>)>,
    /// Send the request Non-confirmable.
    #[arg(long)]
    non: bool,
    /// Give up when no response came within SECONDS (the default is the message layer's:
    /// about 93 s for a Confirmable request).
    #[arg(long, short = 't', value_name = "SECONDS", value_parser = seconds)]
    timeout: Option<Duration>,
    /// Write the payload of a success (2.xx) to FILE instead of stdout (through a temporary
    /// file renamed over FILE, so that an error response leaves FILE as it was).
    #[arg(long, short = 'o', value_name = "FILE", conflicts_with = "json")]
    output: Option<PathBuf>,
    /// The largest payload sent or received, in bytes (suffixes k, M, G: powers of 1024).
    #[arg(long, value_name = "BYTES", value_parser = byte_size, default_value = "64M")]
    max_size: usize,
    /// Block size for block-wise transfers (RFC 7959): uploads go in blocks of BYTES, and
    /// the response is asked for in blocks of BYTES (16, 32, … 1024).
    #[arg(long, short = 'b', value_name = "BYTES", value_parser = block_size)]
    block_size: Option<usize>,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// An observation's arguments.
#[derive(Debug, Args)]
struct ObserveArgs {
    /// The resource: coap://host[:port]/path?query.
    uri: String,
    /// Stop after N responses (the first one included).
    #[arg(long, short = 'n', value_name = "N")]
    count: Option<u64>,
    /// Stop after SECONDS.
    #[arg(long, short = 'd', value_name = "SECONDS", value_parser = seconds)]
    duration: Option<Duration>,
    /// The Content-Format wanted in the notifications (as in a request).
    #[arg(long, short = 'A', value_name = "FORMAT", value_parser = options::content_format)]
    accept: Option<coapio::message::ContentFormat>,
    /// An option of the registration, NUMBER=VALUE or Name=VALUE (repeatable).
    #[arg(short = 'O', long = "option", value_name = "NUMBER=VALUE", value_parser = options::option)]
    options: Vec<(OptionNumber, Vec<u8>)>,
    /// Register Non-confirmable.
    #[arg(long)]
    non: bool,
    /// The largest notification payload received, in bytes (suffixes k, M, G).
    #[arg(long, value_name = "BYTES", value_parser = byte_size, default_value = "64M")]
    max_size: usize,
    #[command(flatten)]
    out: OutputArgs,
    #[command(flatten)]
    security: SecurityArgs,
}

/// Discovery's arguments.
#[derive(Debug, Args)]
struct DiscoverArgs {
    /// The path to ask every server for.
    #[arg(default_value = "/.well-known/core")]
    path: String,
    /// Ask ff02::fd (link-local All-CoAP-Nodes) on this network interface; without it,
    /// 224.0.1.187 (IPv4 All-CoAP-Nodes).
    #[arg(long, short = 'i', value_name = "IF")]
    interface: Option<String>,
    /// Ask 224.0.1.187 even with --interface.
    #[arg(long)]
    ipv4: bool,
    /// Port of the servers.
    #[arg(long, default_value_t = 5683)]
    port: u16,
    /// How long to collect answers (servers wait up to 5 s before answering a multicast
    /// request).
    #[arg(long, short = 't', value_name = "SECONDS", value_parser = seconds, default_value = "6")]
    timeout: Duration,
    #[command(flatten)]
    out: OutputArgs,
}

/// A block size: a power of two from 16 to 1024.
fn block_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n.is_power_of_two() && (16..=1024).contains(&n) => Ok(n),
        _ => Err(format!(
            "{s:?} is not a block size (16, 32, 64, 128, 256, 512 or 1024)"
        )),
    }
}

/// A number of bytes, with an optional suffix k, M or G (powers of 1024); at least 1.
fn byte_size(s: &str) -> Result<usize, String> {
    let (digits, shift) = match s.char_indices().last() {
        Some((i, 'k' | 'K')) => (&s[..i], 10),
        Some((i, 'm' | 'M')) => (&s[..i], 20),
        Some((i, 'g' | 'G')) => (&s[..i], 30),
        _ => (s, 0),
    };
    digits
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("{s:?} is not a number of bytes (such as 65536, 64k or 64M)"))
}

/// A number of seconds, 0 < s < 10^6.
fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t < 1e6 => Ok(Duration::from_secs_f64(t)),
        _ => Err(format!("{s:?} is not a number of seconds (more than 0)")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Get(a) => request(Code::GET, a),
        Command::Put(a) => request(Code::PUT, a),
        Command::Post(a) => request(Code::POST, a),
        Command::Delete(a) => request(Code::DELETE, a),
        Command::Fetch(a) => request(Code::FETCH, a),
        Command::Patch(a) => request(Code::PATCH, a),
        Command::Ipatch(a) => request(Code::IPATCH, a),
        Command::Observe(a) => observe(a),
        Command::Discover(a) => discover(a),
        Command::Serve(a) => serve::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "coapio", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
    }
}

/// Says `message` on stderr and returns `status`.
fn fail(status: u8, message: &str) -> ExitCode {
    eprintln!("coapio: {message}");
    ExitCode::from(status)
}

fn status_of(f: &Failure) -> u8 {
    match f {
        Failure::NoResponse(_) => EXIT_NO_RESPONSE,
        Failure::Usage(_) => EXIT_USAGE,
        Failure::Local(_) => EXIT_LOCAL,
    }
}

fn exit_for(code: Code) -> ExitCode {
    if code.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_ERROR_RESPONSE)
    }
}

/// Sends the library's log to stderr at `-vv`.
fn log_to_stderr(verbose: u8) {
    struct Stderr;
    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, r: &log::Record<'_>) {
            eprintln!("{:5} {}", r.level(), r.args());
        }
        fn flush(&self) {}
    }
    if verbose >= 2 && log::set_logger(&Stderr).is_ok() {
        log::set_max_level(if verbose >= 3 {
            log::LevelFilter::Trace
        } else {
            log::LevelFilter::Debug
        });
    }
}

fn output(o: &OutputArgs) -> Output {
    log_to_stderr(o.verbose);
    Output::new(o.json, o.verbose > 0, o.raw, o.pretty)
}

/// `get`, `put`, …: one request, one response.
fn request(method: Code, a: RequestArgs) -> ExitCode {
    let mut out = output(&a.out);
    out.file = a.output.clone();
    if let Err(e) = client::check_uri(&a.uri) {
        return out.fail(EXIT_USAGE, &e);
    }
    let payload = match (&a.payload, &a.payload_file) {
        (Some(p), _) => p.clone().into_bytes(),
        (None, Some(f)) => {
            let (name, from): (String, Box<dyn Read>) = if f.as_os_str() == "-" {
                ("standard input".into(), Box::new(std::io::stdin()))
            } else {
                match std::fs::File::open(f) {
                    Ok(file) => (f.display().to_string(), Box::new(file)),
                    Err(e) => return out.fail(EXIT_LOCAL, &format!("{}: {e}", f.display())),
                }
            };
            let mut b = Vec::new();
            let limit = u64::try_from(a.max_size).unwrap_or(u64::MAX);
            if let Err(e) = from.take(limit.saturating_add(1)).read_to_end(&mut b) {
                return out.fail(EXIT_LOCAL, &format!("{name}: {e}"));
            }
            if b.len() > a.max_size {
                return out.fail(
                    EXIT_LOCAL,
                    &format!(
                        "{name}: the payload is larger than {} bytes, the most --max-size allows",
                        a.max_size
                    ),
                );
            }
            b
        }
        (None, None) => Vec::new(),
    };
    let mut options = Vec::new();
    if let Some(cf) = a.content_format {
        options.push((OptionNumber::CONTENT_FORMAT, options::uint(cf.0.into())));
    }
    if let Some(cf) = a.accept {
        options.push((OptionNumber::ACCEPT, options::uint(cf.0.into())));
    }
    if let Err(e) = options::check_not_uri(&a.options) {
        return out.fail(EXIT_USAGE, &e);
    }
    if let Some(size) = a.block_size {
        // Early negotiation (RFC 7959 §2.4): block 0 of the response at this size.
        let szx = coapio::message::BlockValue::szx_for_size(size);
        options.push((OptionNumber::BLOCK2, options::uint(szx.into())));
    }
    options.extend(a.options.iter().cloned());
    let spec = Spec {
        method,
        options,
        payload,
        confirmable: !a.non,
        timeout: a.timeout,
    };
    let name = method.name().unwrap_or("request");
    let progress = Progress::new(&format!("{name} {}", a.uri), !a.out.no_progress);
    let tuning = Tuning {
        block_size: a.block_size,
        max_body_size: Some(a.max_size),
        ..Tuning::default()
    };
    let mut client = match Client::open(&a.security.security(), progress.hook(), tuning) {
        Ok(c) => c,
        Err(f) => return out.fail(status_of(&f), &f.to_string()),
    };
    let result = client.request(&a.uri, &spec);
    progress.finish();
    match result {
        Ok(reply) => match out.show(&reply) {
            Ok(()) => exit_for(reply.code),
            // stdout closed (`| head`): nothing more to say.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit_for(reply.code),
            Err(e) => out.fail(EXIT_LOCAL, &e.to_string()),
        },
        Err(f) => {
            out.failure(&f.to_string());
            ExitCode::from(status_of(&f))
        }
    }
}

/// `observe`: responses as they come, with a live counter on stderr.
fn observe(a: ObserveArgs) -> ExitCode {
    let mut out = output(&a.out);
    out.separate = true;
    if let Err(e) = client::check_uri(&a.uri) {
        return out.fail(EXIT_USAGE, &e);
    }
    if a.count == Some(0) {
        return out.fail(EXIT_USAGE, "--count must be at least 1");
    }
    if let Err(e) = options::check_not_uri(&a.options) {
        return out.fail(EXIT_USAGE, &e);
    }
    let progress = Progress::new(&format!("observing {}", a.uri), !a.out.no_progress);
    let tuning = Tuning {
        max_body_size: Some(a.max_size),
        ..Tuning::default()
    };
    let mut client = match Client::open(&a.security.security(), None, tuning) {
        Ok(c) => c,
        Err(f) => return out.fail(status_of(&f), &f.to_string()),
    };
    let mut options = a.options;
    if let Some(cf) = a.accept {
        options.push((OptionNumber::ACCEPT, options::uint(cf.0.into())));
    }
    let spec = Spec {
        method: Code::GET,
        options,
        payload: Vec::new(),
        confirmable: !a.non,
        timeout: None,
    };
    let (mut n, mut errors, mut write_error) = (0u64, 0u64, None);
    let result = client.observe(&a.uri, &spec, a.duration, |reply| {
        n += 1;
        if !reply.code.is_success() {
            errors += 1;
        }
        if let Err(e) = progress.suspend(|| out.show(&reply)) {
            write_error = Some(e);
            return false;
        }
        let noun = if n == 1 { "response" } else { "responses" };
        progress.message(format!("observing {}: {n} {noun}", a.uri));
        a.count.is_none_or(|c| n < c)
    });
    progress.finish();
    if let Some(e) = write_error {
        // stdout closed (`| head`): stop quietly.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::from(if errors > 0 { EXIT_ERROR_RESPONSE } else { 0 });
        }
        return out.fail(EXIT_LOCAL, &e.to_string());
    }
    match result {
        Ok(_) if n == 0 => {
            let message = match a.duration {
                Some(d) => format!("no response from {} within {d:?}", a.uri),
                None => format!("no response from {}", a.uri),
            };
            out.failure(&message);
            ExitCode::from(EXIT_NO_RESPONSE)
        }
        Ok(end) => {
            if a.out.verbose > 0 && !a.out.json {
                let why = match end {
                    ObserveEnd::Enough => "count reached",
                    ObserveEnd::Duration => "duration passed",
                    ObserveEnd::ServerEnded => "the server ended the observation",
                };
                eprintln!("coapio: {n} responses; {why}");
            }
            if errors > 0 {
                ExitCode::from(EXIT_ERROR_RESPONSE)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(f) => {
            out.failure(&f.to_string());
            ExitCode::from(status_of(&f))
        }
    }
}

/// `discover`: a GET to the All-CoAP-Nodes group, every answer with its server.
fn discover(a: DiscoverArgs) -> ExitCode {
    let mut out = output(&a.out);
    out.label_source = true;
    out.separate = true;
    out.render = !a.out.raw;
    if !a.path.starts_with('/') {
        return out.fail(EXIT_USAGE, &format!("{:?}: the path starts with /", a.path));
    }
    let uri = match (&a.interface, a.ipv4) {
        (Some(i), false) => {
            if coapio::transport::interface_index(i).is_none() {
                return out.fail(EXIT_USAGE, &format!("no network interface named {i:?}"));
            }
            format!("coap://[ff02::fd%25{i}]:{}{}", a.port, a.path)
        }
        _ => format!("coap://224.0.1.187:{}{}", a.port, a.path),
    };
    if let Err(e) = client::check_uri(&uri) {
        return out.fail(EXIT_USAGE, &e);
    }
    let progress = Progress::new(&format!("asking {uri}"), !a.out.no_progress);
    let tuning = Tuning {
        multicast_timeout: Some(a.timeout),
        ..Tuning::default()
    };
    let mut client = match Client::open(&Security::default(), None, tuning) {
        Ok(c) => c,
        Err(f) => return out.fail(status_of(&f), &f.to_string()),
    };
    let spec = Spec {
        method: Code::GET,
        options: Vec::new(),
        payload: Vec::new(),
        confirmable: false,
        timeout: None,
    };
    let (mut errors, mut write_error) = (0, None);
    let result = client.multicast(&uri, &spec, |reply| {
        if !reply.code.is_success() {
            errors += 1;
        }
        if let Err(e) = progress.suspend(|| out.show(&reply)) {
            write_error.get_or_insert(e);
        }
    });
    progress.finish();
    if let Some(e) = write_error {
        // stdout closed (`| head`): stop quietly.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return ExitCode::from(if errors > 0 { EXIT_ERROR_RESPONSE } else { 0 });
        }
        return out.fail(EXIT_LOCAL, &e.to_string());
    }
    match result {
        Ok(0) => out.fail(
            EXIT_NO_RESPONSE,
            &format!("no server answered {uri} within {:?}", a.timeout),
        ),
        Ok(_) if errors > 0 => ExitCode::from(EXIT_ERROR_RESPONSE),
        Ok(_) => ExitCode::SUCCESS,
        Err(f) => {
            out.failure(&f.to_string());
            ExitCode::from(status_of(&f))
        }
    }
}
