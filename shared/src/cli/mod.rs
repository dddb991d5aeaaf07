//! The `perfagent` operator command line: argument definitions, the commands, and the mapping of
//! every failure to a message and a documented exit code. The binary only calls [`main`].
//!
//! Commands are variants of [`Command`]: `parse`, `check` and `scrape` work on metrics text; the
//! commands against a deployed agent's API (instances, bottlenecks, recommendations, workflows)
//! live in `remote`.

mod json;
mod raw;
mod remote;
mod table;

use crate::client::ClientError;
use crate::engine::{self, AdaptError};
use crate::instance::Id;
use crate::netguard::NetGuard;
use crate::promtext::{self, Format, Mode, ParseError};
use crate::scrape::{ScrapeConfig, ScrapeError, Scraper};
use crate::snapshot::{Engine, Snapshot};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

pub use raw::write_samples;
pub use remote::{
    ApiArgs, ApiFailure, ApproveArgs, BottlenecksArgs, InstancesArgs, ListWorkflowsArgs,
    RecommendationsArgs, RejectArgs, StartArgs, WorkflowCommand, WorkflowIdArgs, WorkflowsArgs,
};

/// The exit codes, one home for the numbers `--help` and `docs/engines.md` document.
pub mod exit {
    pub const OK: u8 = 0;
    /// The input is not valid exposition text (`check`, or `parse`/`scrape` that cannot parse it).
    pub const INVALID: u8 = 1;
    /// Bad arguments (clap's own code), including a URL that is not http(s) or is refused, no API
    /// URL, no usable AWS credentials, or a recommendation that is not `--group`'s.
    pub const USAGE: u8 = 2;
    /// The input file does not exist, or the API answered 404 (no such instance, recommendation
    /// or workflow).
    pub const NOT_FOUND: u8 = 3;
    /// The input exists but cannot be read (permissions, a directory, an I/O error), the output
    /// cannot be written, or the async runtime or HTTP client cannot start.
    pub const IO: u8 = 4;
    /// The URL or the API could not be reached: DNS, connection refused, timeout.
    pub const UNREACHABLE: u8 = 5;
    /// The server answered without a usable body: HTTP error status, body over the size cap, or
    /// a body cut short; for the API, a 5xx or an answer that is not the JSON it documents.
    pub const BAD_RESPONSE: u8 = 6;
    /// Valid text, but not a vLLM, TGI or SGLang server's (or not the `--engine` given).
    pub const NOT_AN_ENGINE: u8 = 7;
    /// The API refused the request: a 4xx other than 404 (the message gives the API's code, e.g.
    /// `not_an_approver`, `already_decided`, `group_busy`, `validation_failed`).
    pub const REFUSED: u8 = 8;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (check: the input is valid)
  1  invalid input: not valid exposition text (the error gives FILE:LINE:COLUMN)
  2  usage error: bad arguments, a URL that is not http(s) or points at a forbidden address,
     no API URL (--api-url or PERFAGENT_API_URL), or no usable AWS credentials
  3  the input file does not exist, or the API has no such instance, recommendation or
     workflow (HTTP 404)
  4  I/O error: the input cannot be read, the output cannot be written, or the runtime or
     HTTP client cannot start
  5  the URL or the API cannot be reached (DNS, connection refused, timeout)
  6  the server answered without a usable body (HTTP error status, body over --max-bytes);
     the API failed (HTTP 5xx) or answered something that is not its JSON
  7  the metrics are not a vLLM, TGI or SGLang server's, or contradict --engine
  8  the API refused the request (HTTP 4xx other than 404; the error gives the API's code and
     message, e.g. not_an_approver, already_decided, group_busy)";

/// Command-line interface of the performance agent.
#[derive(Debug, Parser)]
#[command(name = "perfagent", version, about, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse a /metrics text and print its normalized snapshot as JSON (with --raw, every sample
    /// as one JSON object per line)
    #[command(after_help = EXIT_CODES_HELP)]
    Parse(ParseArgs),
    /// Validate a /metrics text against the Prometheus 0.0.4 or OpenMetrics 1.0 format
    #[command(after_help = EXIT_CODES_HELP)]
    Check(CheckArgs),
    /// Fetch a /metrics URL and print its normalized snapshot as JSON
    #[command(after_help = EXIT_CODES_HELP)]
    Scrape(ScrapeArgs),
    /// The deployed agent's registered instances, with their scrape health
    #[command(after_help = EXIT_CODES_HELP)]
    Instances(InstancesArgs),
    /// The bottlenecks of the latest stored analyses
    #[command(after_help = EXIT_CODES_HELP)]
    Bottlenecks(BottlenecksArgs),
    /// The group recommendations the analyzer proposed
    #[command(after_help = EXIT_CODES_HELP)]
    Recommendations(RecommendationsArgs),
    /// Optimization workflows: list, start, show, approve, reject
    #[command(after_help = EXIT_CODES_HELP)]
    Workflows(WorkflowsArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EngineArg {
    /// Detect the engine from the metric names
    Auto,
    Vllm,
    Tgi,
    Sglang,
}

impl EngineArg {
    fn hint(self) -> Option<Engine> {
        match self {
            EngineArg::Auto => None,
            EngineArg::Vllm => Some(Engine::Vllm),
            EngineArg::Tgi => Some(Engine::Tgi),
            EngineArg::Sglang => Some(Engine::Sglang),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Accept what real servers emit (the scraper's mode)
    Lenient,
    /// Prometheus text 0.0.4, strictly
    Prometheus,
    /// OpenMetrics 1.0, strictly
    Openmetrics,
}

impl FormatArg {
    fn mode(self) -> Mode {
        match self {
            FormatArg::Lenient => Mode::Lenient,
            FormatArg::Prometheus => Mode::Strict(Format::Prometheus),
            FormatArg::Openmetrics => Mode::Strict(Format::OpenMetrics),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StrictFormat {
    Prometheus,
    Openmetrics,
}

impl StrictFormat {
    fn format(self) -> Format {
        match self {
            StrictFormat::Prometheus => Format::Prometheus,
            StrictFormat::Openmetrics => Format::OpenMetrics,
        }
    }

    fn name(self) -> &'static str {
        match self {
            StrictFormat::Prometheus => "Prometheus 0.0.4",
            StrictFormat::Openmetrics => "OpenMetrics 1.0",
        }
    }
}

#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Print every sample as a JSON line {"name","labels","value"} instead of the snapshot
    #[arg(long)]
    pub raw: bool,
    /// The engine that produced the text; `auto` detects it from the names
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    pub engine: EngineArg,
    /// How strictly to parse
    #[arg(long, value_enum, default_value_t = FormatArg::Lenient)]
    pub format: FormatArg,
    /// The exposition text: a file, or `-` for standard input
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The format the text must follow
    #[arg(long, value_enum)]
    pub format: StrictFormat,
    /// The exposition text: a file, or `-` for standard input
    #[arg(value_name = "FILE|-")]
    pub input: PathBuf,
}

#[derive(Debug, Args)]
pub struct ScrapeArgs {
    /// The metrics URL (http or https)
    pub url: String,
    /// Give up on the whole exchange after this many milliseconds
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Refuse a body larger than this many bytes (checked while it streams in)
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    pub max_bytes: usize,
    /// The engine that serves the URL; `auto` detects it from the names
    #[arg(long, value_enum, default_value_t = EngineArg::Auto)]
    pub engine: EngineArg,
}

/// Why a command failed; [`CliError::exit_code`] gives its documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{path}: no such file")]
    NotFound { path: String },
    #[error("{input}: cannot read: {error}")]
    Unreadable { input: String, error: io::Error },
    #[error("{input}:{}:{}: {}", error.line, error.column, error.message)]
    Invalid { input: String, error: ParseError },
    #[error("{input}: {error}")]
    NotAnEngine { input: String, error: AdaptError },
    #[error("{url}: {error}")]
    Scrape { url: String, error: ScrapeError },
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("cannot write the output: {0}")]
    Output(io::Error),
    #[error("{0}")]
    Api(ClientError),
    #[error("{0}")]
    ApiFailure(ApiFailure),
    #[error("the API's answer is not the {what} this CLI expects ({error}); --json prints it as it came")]
    UnexpectedAnswer {
        what: &'static str,
        error: serde_json::Error,
    },
    #[error(
        "recommendation {recommendation} is group {group}'s, not {expected}'s: nothing was started"
    )]
    WrongGroup {
        recommendation: String,
        group: Id,
        expected: Id,
    },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::NotFound { .. } => exit::NOT_FOUND,
            CliError::Unreadable { .. } | CliError::Output(_) | CliError::Client(_) => exit::IO,
            CliError::Invalid { .. } => exit::INVALID,
            CliError::NotAnEngine { .. } => exit::NOT_AN_ENGINE,
            CliError::Scrape { error, .. } => match error {
                ScrapeError::Rejected(_) => exit::USAGE,
                ScrapeError::Status(_) | ScrapeError::TooLarge(_) | ScrapeError::Body(_) => {
                    exit::BAD_RESPONSE
                }
                // Timeouts, connection and DNS failures: no answer came.
                _ => exit::UNREACHABLE,
            },
            CliError::Api(error) => match error {
                ClientError::Credentials(_) | ClientError::BadUrl(_) | ClientError::Signing(_) => {
                    exit::USAGE
                }
                ClientError::Unreachable { .. } => exit::UNREACHABLE,
                ClientError::NotJson { .. } => exit::BAD_RESPONSE,
            },
            CliError::ApiFailure(f) if f.status == http::StatusCode::NOT_FOUND => exit::NOT_FOUND,
            CliError::ApiFailure(f) if f.status.is_client_error() => exit::REFUSED,
            CliError::ApiFailure(_) | CliError::UnexpectedAnswer { .. } => exit::BAD_RESPONSE,
            CliError::WrongGroup { .. } => exit::USAGE,
        }
    }
}

/// Where a command reads `-` from and writes its result to.
pub struct Io<'a> {
    pub stdin: &'a mut dyn Read,
    pub stdout: &'a mut dyn Write,
}

/// Runs one parsed command line.
pub async fn run(cli: Cli, io: Io<'_>) -> Result<(), CliError> {
    match cli.command {
        Command::Parse(args) => parse(args, io),
        Command::Check(args) => check(args, io),
        Command::Scrape(args) => scrape(args, io).await,
        Command::Instances(args) => remote::instances(args, io).await,
        Command::Bottlenecks(args) => remote::bottlenecks(args, io).await,
        Command::Recommendations(args) => remote::recommendations(args, io).await,
        Command::Workflows(args) => remote::workflows(args, io).await,
    }
}

/// The whole process: arguments, a runtime, [`run`], and the error message and exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; usage errors to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(exit::USAGE));
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("perfagent: cannot start the async runtime: {e}");
            return ExitCode::from(exit::IO);
        }
    };
    let mut stdin = io::stdin().lock();
    let mut stdout = BufWriter::new(io::stdout().lock());
    let io = Io {
        stdin: &mut stdin,
        stdout: &mut stdout,
    };
    let result = runtime
        .block_on(run(cli, io))
        .and_then(|()| stdout.flush().map_err(CliError::Output));
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        // The reader went away (`| head`): what it wanted was written.
        Err(CliError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => {
            ExitCode::from(exit::OK)
        }
        Err(e) => {
            eprintln!("perfagent: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn display_name(input: &Path) -> String {
    if is_stdin(input) {
        "<stdin>".to_string()
    } else {
        input.display().to_string()
    }
}

fn is_stdin(input: &Path) -> bool {
    input == Path::new("-")
}

fn read_input(input: &Path, stdin: &mut dyn Read) -> Result<Vec<u8>, CliError> {
    let name = display_name(input);
    let read = if is_stdin(input) {
        let mut buf = Vec::new();
        stdin.read_to_end(&mut buf).map(|_| buf)
    } else {
        std::fs::read(input)
    };
    read.map_err(|error| match error.kind() {
        io::ErrorKind::NotFound => CliError::NotFound { path: name.clone() },
        _ => CliError::Unreadable { input: name, error },
    })
}

fn parse_text<'b>(
    input: &str,
    bytes: &'b [u8],
    mode: Mode,
) -> Result<promtext::Exposition<'b>, CliError> {
    promtext::parse(bytes, mode).map_err(|error| CliError::Invalid {
        input: input.to_string(),
        error,
    })
}

fn print_snapshot(snapshot: &Snapshot, out: &mut dyn Write) -> Result<(), CliError> {
    json::write_pretty(snapshot, out).map_err(CliError::Output)
}

fn normalize(
    input: &str,
    bytes: &[u8],
    mode: Mode,
    engine: EngineArg,
) -> Result<Snapshot, CliError> {
    let exp = parse_text(input, bytes, mode)?;
    engine::normalize(&exp, engine.hint()).map_err(|error| CliError::NotAnEngine {
        input: input.to_string(),
        error,
    })
}

fn parse(args: ParseArgs, io: Io<'_>) -> Result<(), CliError> {
    let bytes = read_input(&args.input, io.stdin)?;
    let name = display_name(&args.input);
    if args.raw {
        let exp = parse_text(&name, &bytes, args.format.mode())?;
        return raw::write_samples(&exp, io.stdout).map_err(CliError::Output);
    }
    let snapshot = normalize(&name, &bytes, args.format.mode(), args.engine)?;
    print_snapshot(&snapshot, io.stdout)
}

fn check(args: CheckArgs, io: Io<'_>) -> Result<(), CliError> {
    let bytes = read_input(&args.input, io.stdin)?;
    let name = display_name(&args.input);
    let exp = parse_text(&name, &bytes, Mode::Strict(args.format.format()))?;
    writeln!(
        io.stdout,
        "{name}: valid {} ({} families, {} samples)",
        args.format.name(),
        exp.families.len(),
        exp.sample_count()
    )
    .map_err(CliError::Output)
}

async fn scrape(args: ScrapeArgs, io: Io<'_>) -> Result<(), CliError> {
    let config = ScrapeConfig {
        timeout: Duration::from_millis(args.timeout_ms),
        max_bytes: args.max_bytes,
        // One attempt: the operator is watching and can run it again.
        retries: 0,
        ..ScrapeConfig::default()
    };
    // An operator may scrape any address, loopback included; the guard still refuses non-HTTP
    // schemes and the link-local / metadata addresses.
    let guard = NetGuard::from_list("0.0.0.0/0,::/0").map_err(CliError::Client)?;
    let scraper = Scraper::new(guard, config).map_err(|e| CliError::Client(e.to_string()))?;
    let body = scraper
        .fetch_once(&args.url)
        .await
        .map_err(|error| CliError::Scrape {
            url: args.url.clone(),
            error,
        })?;
    let snapshot = normalize(&args.url, &body, Mode::Lenient, args.engine)?;
    print_snapshot(&snapshot, io.stdout)
}
