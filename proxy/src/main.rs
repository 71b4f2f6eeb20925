//! `switchyard run | check | demo`: args -> Config::load -> App::build -> app.run(shutdown).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use switchyard::app::App;
use switchyard::config::{self, Config};
use switchyard::telemetry;

/// The request path allocates and frees small blocks all the time (header maps, bodies, futures);
/// mimalloc's thread-local free lists make that cheaper than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit codes (SPEC section 1).
const EXIT_INVALID: u8 = 1;
const EXIT_RUNTIME: u8 = 2;

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "Failover sidecar proxy for services deployed in several regions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the sidecar.
    Run {
        /// Config file [default: ./switchyard.toml, then $SWITCHYARD_CONFIG]
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Validate the config and load every plugin; print every error as FILE:LINE:COL: message.
    Check {
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// A self-contained failover drill on this machine: demo regions, the sidecar, live traffic.
    Demo,
    /// Compiles one plugin (stdin) for this binary's engine (stdout); run by the sidecar itself.
    #[command(name = switchyard::plugin::COMPILER_SUBCOMMAND, hide = true)]
    CompilePlugin,
}

fn config_path(given: Option<PathBuf>) -> PathBuf {
    if let Some(path) = given {
        return path;
    }
    let local = PathBuf::from("switchyard.toml");
    if local.exists() {
        return local;
    }
    std::env::var_os("SWITCHYARD_CONFIG")
        .map(PathBuf::from)
        .unwrap_or(local)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(exe) = own_executable() {
        switchyard::plugin::compile_in_child_process(exe);
    }
    match cli.command {
        Command::Run { config } => run(&config_path(config)),
        Command::Check { config } => check(&config_path(config)),
        Command::Demo => demo(),
        Command::CompilePlugin => switchyard::plugin::compiler_main(),
    }
}

/// How to run this same executable again: on Linux `/proc/self/exe` names the file this
/// process was started from even after an upgrade replaced it on disk. Without one, plugins
/// compile in-process; so they do with `SWITCHYARD_COMPILE_IN_PROCESS` set, for tools such as
/// valgrind under which `/proc/self/exe` is the tool rather than switchyard.
fn own_executable() -> Option<PathBuf> {
    if std::env::var_os("SWITCHYARD_COMPILE_IN_PROCESS").is_some() {
        return None;
    }
    let proc_self = PathBuf::from("/proc/self/exe");
    if proc_self.exists() {
        return Some(proc_self);
    }
    std::env::current_exe().ok()
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    config::load(path).map_err(|errors| {
        eprint!("{errors}");
        ExitCode::from(EXIT_INVALID)
    })
}

fn check(path: &std::path::Path) -> ExitCode {
    let (config, config_errors) = match config::load_with_errors(path) {
        Ok(read) => read,
        Err(errors) => {
            eprint!("{errors}");
            return ExitCode::from(EXIT_INVALID);
        }
    };
    // Plugins are loaded even when the config has errors elsewhere: one run, every error.
    let plugin_errors = switchyard::plugin::check_all(&config).err().map(|e| e.0);
    if !config_errors.is_empty() || plugin_errors.is_some() {
        let mut lines: Vec<((usize, usize), String)> = config_errors
            .iter()
            .map(|d| ((d.line, d.column), d.to_string()))
            .collect();
        lines.extend(plugin_errors.into_iter().flatten().map(|e| {
            let at =
                e.at.as_ref()
                    .map_or((usize::MAX, 0), |a| (a.line, a.column));
            (at, e.to_string())
        }));
        // File order; a stable sort keeps errors at one place in the order they were found.
        lines.sort_by_key(|(at, _)| *at);
        for (_, line) in lines {
            eprintln!("{line}");
        }
        return ExitCode::from(EXIT_INVALID);
    }
    println!(
        "{}: ok ({} services)",
        path.display(),
        config.services.len()
    );
    ExitCode::SUCCESS
}

/// Every connection is a file descriptor, two when proxied; a soft limit of 1024 (a common
/// default) would cap the sidecar near 500 clients. Raise it to the hard limit, as nginx's
/// `worker_rlimit_nofile` and Go's runtime do; the operator's hard limit still applies.
fn raise_open_files_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        eprintln!("switchyard: cannot raise the open files limit from {soft} to {hard}: {e}");
    }
}

fn runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if workers == 1 {
        // One worker means one thread doing everything, as with nginx's `worker_processes 1`
        // or HAProxy's `nbthread 1`: a current-thread runtime has no cross-thread wake-ups,
        // no work-stealing queues and no idle worker parking (about 10% less CPU per request).
        return tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("switchyard")
            .build();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.enable_all().thread_name("switchyard").build()
}

fn run(path: &std::path::Path) -> ExitCode {
    let config = match load(path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    raise_open_files_limit();
    let rt = match runtime(config.workers) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    // Inside the runtime: the trace exporter's connections live on it. The guard flushes the
    // last spans once serving is over, while the runtime still runs.
    let telemetry = {
        let _entered = rt.enter();
        telemetry::init(&config.telemetry)
    };
    let code = rt.block_on(async {
        let app = match App::build(config).await {
            Ok(app) => app,
            Err(e) => {
                eprintln!("switchyard: {e}");
                return ExitCode::from(e.exit_code());
            }
        };
        let state = app.state();
        app.run(switchyard::signals::until_stopped(state)).await;
        ExitCode::SUCCESS
    });
    // Flushed off the runtime's threads while `block_on` keeps driving the exporter's tasks:
    // a current-thread runtime runs tasks only inside `block_on`.
    rt.block_on(async move {
        let _ = tokio::task::spawn_blocking(move || drop(telemetry)).await;
    });
    code
}

fn demo() -> ExitCode {
    let rt = match runtime(0) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("switchyard: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match rt.block_on(switchyard::demo::run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard demo: {e}");
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}
