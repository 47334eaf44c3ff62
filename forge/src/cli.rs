//! The `forge` command line: `forge run SUITE.yaml...`,
//! `forge run --payload FILE`, `forge merge --out DIR INPUT...`,
//! `forge diff BASE NEW`, `forge report DIR [-o FILE]`,
//! `forge init [DIR]` (in `init`) and (feature `serve`) `forge serve`;
//! `forge run --lambda FUNCTION` runs the sessions on AWS Lambda (feature
//! `lambda-client`, in `fanout`).
//!
//! `forge run SUITE...` keeps only its own concerns (arguments, the exit
//! status, the closing lines) around the pipeline every front end shares:
//! load, select by `--filter`, run, and report through the console, summary
//! JSON and JUnit reporters. A binary with runners of its own (registered
//! with `#[forge_runner]` or `forge::register_runner!`) gets the whole
//! command by calling [`main`].

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
#[cfg(feature = "serve")]
use std::time::Duration;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::cassette::Cassettes;
use crate::diff::{Baseline, DiffOptions, DEFAULT_ALPHA, DEFAULT_SCORE_DROP};
use crate::partition::Partition;
use crate::pipeline;
use crate::report::console::Console;
use crate::report::github::Github;
use crate::report::html::HtmlReport;
use crate::report::junit::Junit;
use crate::report::part::{Header, Part};
use crate::report::since::Baseline as Marks;
use crate::report::summary::SummaryJson;
use crate::report::sweep::Parts;
use crate::report::{self, Tee};
use crate::select::Rules;

/// Exit status of a run in which some batch failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit status of a bad request: unreadable suite, invalid payload.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Debug, Parser)]
#[command(
    name = "forge",
    version,
    about = "Test AI systems from declarative YAML suites"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run suites (or a seed-format payload) and write the reports.
    Run(Box<RunArgs>),
    /// Merge the reports of shards (or nextest processes) into one.
    Merge(MergeArgs),
    /// Compare a run with a baseline run: what newly fails, newly passes,
    /// answers differently, scores lower; exit 1 when something regressed.
    Diff(DiffArgs),
    /// Write a run's HTML report again from its output directory.
    Report(ReportArgs),
    /// Add forge to an existing cargo crate: the dev-dependency, a
    /// `suites` test target and a first suite.
    Init(crate::init::InitArgs),
    /// Load and check suites as `forge run` would, sending nothing.
    Validate(ValidateArgs),
    /// Print the JSON Schema of the suite format (for editors).
    Schema,
    /// Serve the payload API over HTTP: `POST /run`, `GET /health`.
    #[cfg(feature = "serve")]
    Serve(ServeArgs),
    /// Serve the payload API over HTTP (needs the `serve` feature).
    #[cfg(not(feature = "serve"))]
    Serve(NoServeArgs),
}

/// `forge serve` in a build without the `serve` feature: whatever its
/// arguments, it says how to get a build with it.
#[cfg(not(feature = "serve"))]
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
struct NoServeArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

/// What `forge serve` says in a build without the `serve` feature.
#[cfg(not(feature = "serve"))]
const NO_SERVE: &str = "forge serve is not in this build: it needs the `serve` feature \
(`cargo install forge-eval --features serve`, or `features = [\"serve\"]` on the dependency)";

/// `forge serve`. The bearer token comes from `FORGE_SERVE_TOKEN`.
#[cfg(feature = "serve")]
#[derive(Debug, Args)]
#[command(
    after_help = "When FORGE_SERVE_TOKEN is set, POST /run requires `Authorization: Bearer $FORGE_SERVE_TOKEN`.\nSIGTERM or Ctrl-C stops accepting connections, closes idle ones at once and lets the runs in flight finish.\nThe host's ALQUIMIA_API_KEY / LLM_API_KEY go only to their own base URL and to the hosts of --allow-host / FORGE_ALLOWED_HOSTS."
)]
struct ServeArgs {
    /// Address to listen on; loopback unless you give another one.
    #[arg(long, value_name = "ADDR", default_value = crate::serve::DEFAULT_BIND)]
    bind: std::net::SocketAddr,
    /// Largest request body accepted (413 beyond it).
    #[arg(long, value_name = "BYTES", default_value_t = crate::serve::DEFAULT_MAX_BODY_BYTES)]
    max_body: usize,
    /// Runs in flight at once (503 beyond it).
    #[arg(long, value_name = "N", default_value_t = crate::serve::DEFAULT_MAX_CONCURRENT_RUNS,
          value_parser = clap::builder::TypedValueParser::map(
              clap::value_parser!(u32).range(1..), |n| n as usize))]
    max_runs: usize,
    /// Sessions in flight at once within one run.
    #[arg(long, value_name = "N", default_value_t = crate::payload::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// Also send the host's ALQUIMIA_API_KEY / LLM_API_KEY to HOST (or
    /// HOST:PORT) when a payload names it without a key (repeatable; adds
    /// to FORGE_ALLOWED_HOSTS).
    #[arg(long = "allow-host", value_name = "HOST")]
    allow_host: Vec<String>,
    /// The most answer bytes one run may hold; the turns past it fail.
    #[arg(long, value_name = "BYTES", default_value_t = crate::serve::DEFAULT_MAX_ANSWER_BYTES)]
    max_answer_bytes: usize,
    /// Time allowed for a request's headers (from the connection's opening
    /// or the request's first byte).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// Time an idle keep-alive connection stays open.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
    /// Connections served at once; more wait in the listen queue (default
    /// 512, or half the open-file limit when lower).
    #[arg(long, value_name = "N", default_value_t = crate::serve::default_max_connections(),
          value_parser = clap::builder::TypedValueParser::map(
              clap::value_parser!(u32).range(1..), |n| n as usize))]
    max_connections: usize,
}

/// A duration flag: `30s`, `250ms`, `2m`, or seconds; more than zero.
#[cfg(feature = "serve")]
fn duration(text: &str) -> Result<Duration, String> {
    match crate::duration::parse_duration(text)? {
        d if d.is_zero() => Err("must be more than 0".into()),
        d => Ok(d),
    }
}

/// `forge merge --out DIR INPUT...`.
#[derive(Debug, Args)]
#[command(
    after_help = "Each INPUT is the output directory of a run (its parts/ say what it ran): a shard of a CI matrix, or $FORGE_OUT_DIR after cargo nextest.\nExit status: 0 when every batch passed, 1 when some failed, 2 when the inputs cannot be merged (nothing is written then)."
)]
struct MergeArgs {
    /// Directory of the merged reports.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Require the inputs to be exactly the N shards of one partition.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    expect: Option<u64>,
    /// Output directories of the runs to merge.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

/// `forge validate SUITE...`.
#[derive(Debug, Args)]
#[command(
    after_help = "Every mistake `forge run` would stop at is reported, located (file:line:column), and nothing is sent: the runners are built, not called. The `${VAR}`s of a `runner:` mapping must be set, as for a run.\nExit status: 0 when every suite is valid, 2 otherwise."
)]
struct ValidateArgs {
    /// Suite files, or directories of suites.
    #[arg(required = true)]
    suites: Vec<PathBuf>,
}

/// `forge diff BASE NEW`.
#[derive(Debug, Args)]
#[command(
    after_help = "BASE and NEW are each the output directory of a `forge run` or `cargo test` (its parts/run.json; or a directory holding such directories, the shards of a CI matrix), or a part file.\nA regression is a batch that newly fails (or is new and fails), a check score lower by more than --score-drop, or, for a batch with `repeat`, a pass-count drop that Fisher's exact test finds significant at --alpha (a drop that is not significant is listed, and does not fail).\nExit status: 0 when nothing regressed, 1 when something did, 2 when an input cannot be read."
)]
struct DiffArgs {
    /// The baseline run (main's).
    #[arg(value_name = "BASE")]
    base: PathBuf,
    /// The run to compare with it.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    #[command(flatten)]
    gate: GateArgs,
    /// `human` (grouped, with counts) or `json`.
    #[arg(long, value_enum, default_value = "human")]
    format: DiffFormat,
}

/// How a run is compared with a baseline.
#[derive(Debug, Args)]
struct GateArgs {
    /// A check's score (the mean over a batch's runs) lower by more than
    /// this is a regression.
    #[arg(long, value_name = "DROP", default_value_t = DEFAULT_SCORE_DROP, value_parser = score_drop)]
    score_drop: f64,
    /// The significance level of a repeated batch's pass-count drop
    /// (Fisher's exact test, one-sided).
    #[arg(long, value_name = "P", default_value_t = DEFAULT_ALPHA, value_parser = alpha)]
    alpha: f64,
}

impl GateArgs {
    fn options(&self) -> DiffOptions {
        DiffOptions {
            score_drop: self.score_drop,
            alpha: self.alpha,
        }
    }
}

/// `forge diff`'s output format.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum DiffFormat {
    /// For people: the changes grouped, with counts.
    Human,
    /// For tools.
    Json,
}

/// `--score-drop`: a number from 0 to 1.
fn score_drop(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(drop) if (0.0..=1.0).contains(&drop) => Ok(drop),
        _ => Err("must be a number from 0 to 1".into()),
    }
}

/// `--alpha`: a number above 0, at most 1.
fn alpha(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(alpha) if alpha > 0.0 && alpha <= 1.0 => Ok(alpha),
        _ => Err("must be a number above 0, at most 1".into()),
    }
}

/// `forge report DIR [-o FILE]`.
#[derive(Debug, Args)]
#[command(
    after_help = "DIR is the output directory of a run (its parts/ and <suite>.json say what it ran), or $FORGE_OUT_DIR after cargo nextest.\nExit status: 0 when the report is written, 2 when DIR cannot be read."
)]
struct ReportArgs {
    /// Output directory of the run.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The HTML file to write (default DIR/report.html).
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Suite files, or directories of suites.
    #[arg(required_unless_present = "payload", conflicts_with = "payload")]
    suites: Vec<PathBuf>,
    /// Run a seed-format payload (a file, or `-` for stdin) and print the
    /// response JSON.
    #[arg(long, value_name = "FILE")]
    payload: Option<String>,
    /// Directory of the reports (default `$FORGE_OUT_DIR`, else `target/forge`).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Sessions in flight at once for `--payload`.
    #[arg(long, default_value_t = crate::payload::DEFAULT_CONCURRENCY)]
    concurrency: usize,
    /// With `--payload`: also send the host's ALQUIMIA_API_KEY / LLM_API_KEY
    /// to HOST (or HOST:PORT) when the payload names it without a key
    /// (repeatable; adds to FORGE_ALLOWED_HOSTS).
    #[arg(long = "allow-host", value_name = "HOST", requires = "payload")]
    allow_host: Vec<String>,
    /// Run only the batches whose test name contains this text.
    #[arg(long)]
    filter: Option<String>,
    /// Run only shard M of N: `hash:M/N` (by a stable hash of each
    /// session) or `count:M/N` (sessions dealt round-robin). Default:
    /// `$FORGE_PARTITION`, else everything.
    #[arg(long, value_name = "SPEC", value_parser = |s: &str| s.parse::<Partition>())]
    partition: Option<Partition>,
    /// Record every turn's reply into DIR/<suite>.cassette.json (with
    /// --replay DIR too: only the turns that do not replay).
    #[arg(long, value_name = "DIR", conflicts_with = "payload")]
    record: Option<PathBuf>,
    /// Answer every turn from the cassettes in DIR and send nothing; a turn
    /// with no recording fails, saying what changed.
    #[arg(long, value_name = "DIR", conflicts_with = "payload")]
    replay: Option<PathBuf>,
    /// With --record: record failed turns too (by default they are left
    /// out, so the next recording retries them).
    #[arg(long, requires = "record")]
    record_errors: bool,
    /// Compare with the run in DIR (main's reports, as `forge diff` reads
    /// them): mark the regressions, and exit with 1 only when a batch
    /// regressed.
    #[arg(long, value_name = "DIR", conflicts_with = "payload")]
    baseline: Option<PathBuf>,
    #[command(flatten)]
    gate: GateArgs,
    /// Run the sessions on AWS Lambda: invoke FUNCTION (a name or ARN of a
    /// deployed forge-lambda; needs the `lambda-client` feature). Checks,
    /// judges and reports stay local.
    #[arg(long, value_name = "FUNCTION", conflicts_with_all = ["payload", "record", "replay"])]
    lambda: Option<String>,
    /// The Lambda Invoke API's URL, for a local emulator (default
    /// AWS_ENDPOINT_URL_LAMBDA, else AWS's).
    #[arg(long, value_name = "URL", requires = "lambda")]
    lambda_endpoint: Option<String>,
    /// Sessions per Lambda invocation (fewer when a payload would pass 1 MiB).
    #[arg(long, value_name = "N", default_value_t = crate::fanout::DEFAULT_CHUNK,
          value_parser = positive)]
    lambda_chunk: usize,
    /// Lambda invocations in flight at once.
    #[arg(long, value_name = "N", default_value_t = crate::fanout::DEFAULT_CONCURRENCY,
          value_parser = positive)]
    lambda_concurrency: usize,
    /// No progress display.
    #[arg(long, short)]
    quiet: bool,
}

/// A count flag: 1 or more.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) | Err(_) => Err("must be a whole number, 1 or more".into()),
        Ok(n) => Ok(n),
    }
}

/// Entry point of the `forge` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("forge: cannot start the tokio runtime: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    match cli.command {
        Command::Run(args) => match &args.payload {
            Some(source) => runtime.block_on(run_payload(source, &args)),
            None => runtime.block_on(run_files(&args)),
        },
        Command::Merge(args) => merge(&args),
        Command::Diff(args) => diff(&args),
        Command::Report(args) => html_report(&args),
        Command::Init(args) => match crate::init::main(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("forge init: {error}");
                ExitCode::from(EXIT_BAD_INPUT)
            }
        },
        Command::Validate(args) => validate(&args),
        Command::Schema => schema(),
        #[cfg(feature = "serve")]
        Command::Serve(args) => runtime.block_on(serve(args)),
        #[cfg(not(feature = "serve"))]
        Command::Serve(_) => {
            eprintln!("forge: {NO_SERVE}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// `forge merge`: the merged reports, their tally, the exit status.
fn merge(args: &MergeArgs) -> ExitCode {
    let merged = match crate::merge::merge(&args.inputs, &args.out, args.expect) {
        Ok(merged) => merged,
        Err(error) => {
            eprintln!("forge: merge: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    for warning in &merged.warnings {
        eprintln!("forge: warning: {warning}");
    }
    eprintln!(
        "forge: {} part(s) merged; reports written to {}",
        merged.parts,
        args.out.display()
    );
    println!("{} passed, {} failed", merged.passed, merged.failed);
    if merged.success {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    }
}

/// `forge validate`: each suite's verdict, the exit status.
fn validate(args: &ValidateArgs) -> ExitCode {
    // As `forge run` loads: JSON and JSONL files checked as they stream.
    let options = crate::suite::LoadOptions {
        stream: true,
        ..Default::default()
    };
    let loaded = crate::load::load(&args.suites, &options);
    for suite in &loaded.suites {
        println!(
            "ok: {} ({}): {} dataset(s), {} batch(es)",
            suite.path.display(),
            suite.report_name(),
            suite.dataset_count(),
            suite.batch_count()
        );
    }
    for failure in &loaded.failures {
        eprintln!("forge: {}", failure.message);
    }
    println!(
        "{} valid, {} invalid",
        loaded.suites.len(),
        loaded.failures.len()
    );
    match loaded.failures.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::from(EXIT_BAD_INPUT),
    }
}

/// `forge schema`: the suite format's JSON Schema on stdout.
fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&crate::suite::json_schema::suite_schema()) {
        Ok(text) => {
            // A closed stdout (`| head`) is the reader's choice, not an error.
            use std::io::Write;
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("forge: cannot serialise the schema: {error}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// `forge report`: the run's HTML report, written again.
fn html_report(args: &ReportArgs) -> ExitCode {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| args.dir.join(report::html::REPORT_HTML));
    match crate::merge::report_html(&args.dir, &out) {
        Ok(()) => {
            eprintln!("forge: report written to {}", out.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("forge: report: {error}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

/// `forge diff`: the report on stdout, the exit status.
fn diff(args: &DiffArgs) -> ExitCode {
    let diff = match crate::diff::diff(&args.base, &args.new, args.gate.options()) {
        Ok(diff) => diff,
        Err(error) => {
            eprintln!("forge: diff: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    };
    let text = match args.format {
        DiffFormat::Human => diff.to_text(),
        DiffFormat::Json => match serde_json::to_string_pretty(&diff.to_json()) {
            Ok(json) => json + "\n",
            Err(error) => {
                eprintln!("forge: diff: cannot serialise the report: {error}");
                return ExitCode::from(EXIT_BAD_INPUT);
            }
        },
    };
    // A closed pipe (`forge diff A B | head`) is not an error of the diff.
    let mut stdout = std::io::stdout().lock();
    let _ = std::io::Write::write_all(&mut stdout, text.as_bytes())
        .and_then(|()| std::io::Write::flush(&mut stdout));
    if diff.regressed() {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run_payload(source: &str, args: &RunArgs) -> ExitCode {
    let text = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map(|_| text)
            .map_err(|e| format!("cannot read the payload from stdin: {e}"))
    } else {
        std::fs::read_to_string(source).map_err(|e| format!("cannot read {source}: {e}"))
    };
    let response = match text.and_then(|t| {
        serde_json::from_str::<serde_json::Value>(&t)
            .map_err(|e| format!("Invalid JSON payload: {e}"))
    }) {
        Ok(payload) => {
            let options = crate::payload::Options {
                host_keys: crate::payload::HostKeys::from_env().allow(&args.allow_host),
                ..crate::payload::Options::from_env(args.concurrency)
            };
            crate::payload::run_with(&payload, &options, CancellationToken::new()).await
        }
        Err(error) => crate::schema::Response::error(error),
    };
    match serde_json::to_string_pretty(&response) {
        Ok(json) => println!("{json}"),
        Err(error) => {
            eprintln!("forge: cannot serialise the response: {error}");
            return ExitCode::from(EXIT_BAD_INPUT);
        }
    }
    if response.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_BAD_INPUT)
    }
}

/// `forge run SUITE...`: load, select by `--filter`, run with the console,
/// summary JSON and JUnit reporters, then tell how it went.
async fn run_files(args: &RunArgs) -> ExitCode {
    let cassettes = Cassettes {
        replay: args.replay.clone(),
        record: args.record.clone(),
        record_errors: args.record_errors,
    };
    // With --lambda the function builds the runners: their `${VAR}`s and
    // types need not exist here.
    let options = crate::suite::LoadOptions {
        offline: cassettes.offline() || args.lambda.is_some(),
        // JSON and JSONL dataset files are read as the run reaches them.
        stream: true,
    };
    // A suite that cannot be loaded is a failing `<stem>::load` test in
    // the reports, as under the harness; the others run, and the exit
    // status is 2.
    let loaded = crate::load::load(&args.suites, &options);
    for failure in &loaded.failures {
        eprintln!("forge: {}", failure.message);
    }
    let (mut suites, load_failures) = (loaded.suites, loaded.failures);
    let (baseline, (selection, partition)) = match (load_baseline(args), select(args, &suites)) {
        (Ok(baseline), Ok(selected)) => (baseline, selected),
        (Err(status), _) | (_, Err(status)) => return status,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| report::out_dir(std::path::Path::new(".")));
    let header = Header::new(&suites, partition.map(|p| p.to_string()), None);
    let cancel = CancellationToken::new();
    let fanout = match lambda_fanout(args, cancel.clone()).await {
        Ok(fanout) => fanout,
        Err(status) => return status,
    };
    // What the reporters mark; `conclude` reads the comparison itself.
    let marks = baseline.clone().map(|b| b as Arc<dyn Marks>);
    let mut console = Console::new(selection.selected(), args.quiet).with_baseline(marks.clone());
    if let Some(fanout) = &fanout {
        fanout.remote(&mut suites);
        let progress = fanout.progress();
        console = console.with_status(move || progress.status());
    }
    let mut reporter = reporters(console, &out, header, marks.as_ref());
    let since = baseline.map(Since::new);
    if let Some(since) = &since {
        reporter = reporter.with(since.clone());
    }
    crate::interrupt::stop_on_signal(cancel.clone());
    let start = Instant::now();
    let outcome = pipeline::execute(
        suites,
        &selection,
        reporter,
        &load_failures,
        &cassettes,
        cancel,
    )
    .await;
    if let Some(fanout) = fanout {
        eprintln!("forge: {}", fanout.finish().await.closing_line());
    }
    match conclude(&outcome, &out, start, since.as_ref()) {
        _ if !load_failures.is_empty() => ExitCode::from(EXIT_BAD_INPUT),
        status => status,
    }
}

/// `--baseline`'s run, read; exit 2 when it cannot be.
fn load_baseline(args: &RunArgs) -> Result<Option<Arc<Baseline>>, ExitCode> {
    let Some(dir) = &args.baseline else {
        return Ok(None);
    };
    match Baseline::load(dir, args.gate.options()) {
        Ok(baseline) => Ok(Some(Arc::new(baseline))),
        Err(error) => {
            eprintln!("forge: --baseline: {error}");
            Err(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

/// The batches `--filter` and `--partition` (or `FORGE_PARTITION`) select
/// (counted: one pass over the suites' datasets), and the partition; exit
/// 2 when the filter matches nothing, the partition is invalid or a
/// dataset file cannot be read.
fn select(
    args: &RunArgs,
    suites: &[crate::suite::Suite],
) -> Result<(Rules, Option<Partition>), ExitCode> {
    let partition = match args
        .partition
        .map(Ok)
        .or_else(|| Partition::from_env().transpose())
    {
        None => None,
        Some(Ok(partition)) => Some(partition),
        Some(Err(error)) => {
            eprintln!("forge: {error}");
            return Err(ExitCode::from(EXIT_BAD_INPUT));
        }
    };
    let filter = args.filter.as_deref();
    let mut matching = Rules::new(suites, filter, None);
    if let Err(error) = matching.count(suites) {
        eprintln!("forge: {error}");
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    if let (0, Some(filter)) = (matching.selected(), &args.filter) {
        eprintln!("forge: no batch matches --filter {filter:?}");
        return Err(ExitCode::from(EXIT_BAD_INPUT));
    }
    // A shard with no session of a suite runs nothing of it and passes.
    let selection = match partition {
        None => matching,
        Some(partition) => {
            let mut shard = Rules::new(suites, filter, Some(partition));
            if let Err(error) = shard.count(suites) {
                eprintln!("forge: {error}");
                return Err(ExitCode::from(EXIT_BAD_INPUT));
            }
            shard
        }
    };
    Ok((selection, partition))
}

/// Counts how the run's selected batches changed since the baseline, as
/// their records come.
#[derive(Clone)]
struct Since {
    baseline: Arc<Baseline>,
    counts: Arc<std::sync::Mutex<crate::diff::SinceCounts>>,
}

impl Since {
    fn new(baseline: Arc<Baseline>) -> Self {
        Since {
            baseline,
            counts: Arc::default(),
        }
    }

    /// The closing line, and whether a batch regressed.
    fn conclude(&self) -> (String, bool) {
        let counts = *self.counts.lock().unwrap_or_else(|e| e.into_inner());
        self.baseline.conclude(&counts)
    }
}

impl crate::report::Reporter for Since {
    fn on_record(&mut self, record: &crate::run::BatchRecord) {
        if record.selected {
            let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            self.baseline.count(&mut counts, record);
        }
    }
}

/// `forge run`'s reporters: `console`, the summary JSON, JUnit, the HTML
/// report and the part in `out`, the previous run's reports replaced, and
/// GitHub's annotations under GitHub Actions.
fn reporters(
    console: Console,
    out: &std::path::Path,
    header: Header,
    baseline: Option<&Arc<dyn Marks>>,
) -> Tee {
    let reporter = Tee::new()
        .with(console)
        .with(SummaryJson::new(out))
        .with(Junit::new(out).with_baseline(baseline.cloned()))
        .with(HtmlReport::new(out).with_since(baseline))
        .with(Part::new(out, header))
        .replacing(out, Parts::Run);
    match Github::from_env() {
        Some(github) => reporter.with(github.with_baseline(baseline.cloned())),
        None => reporter,
    }
}

/// `--lambda`'s fan-out (see [`crate::fanout`]), `None` without the flag.
async fn lambda_fanout(
    args: &RunArgs,
    cancel: CancellationToken,
) -> Result<Option<crate::fanout::Fanout>, ExitCode> {
    let Some(function) = &args.lambda else {
        return Ok(None);
    };
    let options = crate::fanout::LambdaOptions {
        function: function.clone(),
        endpoint: args.lambda_endpoint.clone(),
        chunk: args.lambda_chunk,
        concurrency: args.lambda_concurrency,
    };
    match crate::fanout::Fanout::connect(&options, cancel).await {
        Ok(fanout) => Ok(Some(fanout)),
        Err(error) => {
            eprintln!("forge: {error}");
            Err(ExitCode::from(EXIT_BAD_INPUT))
        }
    }
}

/// Prints where the reports went and the tally; the exit status: with a
/// baseline, 1 when a batch regressed (not when it fails, as in the
/// baseline too), else 1 when a batch failed.
fn conclude(
    outcome: &pipeline::Outcome,
    out: &std::path::Path,
    start: Instant,
    since: Option<&Since>,
) -> ExitCode {
    let mut status = ExitCode::SUCCESS;
    match &outcome.reports {
        Ok(_) => eprintln!("forge: reports written to {}", out.display()),
        Err(error) => {
            eprintln!("forge: {error}");
            status = ExitCode::from(EXIT_FAILED);
        }
    }
    if outcome.interrupted {
        eprintln!("forge: interrupted; partial reports written");
    }
    let (passed, failed) = outcome.tally();
    let ignored = match outcome.skipped() {
        0 => String::new(),
        n => format!(", {n} ignored"),
    };
    println!(
        "{passed} passed, {failed} failed{ignored} in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    let failed = match since {
        Some(since) => {
            let (line, regressed) = since.conclude();
            eprintln!("forge: {line}");
            regressed || outcome.interrupted
        }
        None => !outcome.passed(),
    };
    if failed {
        status = ExitCode::from(EXIT_FAILED);
    }
    status
}

/// `forge serve`: first Ctrl-C or SIGTERM stops accepting connections and
/// lets the runs in flight finish; a second one exits at once.
#[cfg(feature = "serve")]
async fn serve(args: ServeArgs) -> ExitCode {
    let config = crate::serve::ServeConfig {
        bind: args.bind,
        max_body_bytes: args.max_body,
        max_concurrent_runs: args.max_runs,
        concurrency: args.concurrency,
        allowed_hosts: crate::payload::HostKeys::default().allow(&args.allow_host),
        max_answer_bytes: args.max_answer_bytes,
        header_timeout: args.header_timeout,
        idle_timeout: args.idle_timeout,
        max_connections: args.max_connections,
        ..Default::default()
    }
    .token_from_env()
    .hosts_from_env();
    let shutdown = async {
        wait_for_signal().await;
        eprintln!("forge: stopping: finishing runs in flight (press Ctrl-C again to abort)");
        tokio::spawn(async {
            wait_for_signal().await;
            std::process::exit(130);
        });
    };
    match crate::serve::bind_and_serve(config, shutdown).await {
        Ok(()) => {
            eprintln!("forge: stopped");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("forge: {error}");
            ExitCode::from(EXIT_BAD_INPUT)
        }
    }
}

#[cfg(all(unix, feature = "serve"))]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(all(not(unix), feature = "serve"))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
