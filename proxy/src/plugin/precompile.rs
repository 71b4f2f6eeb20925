//! Compiling plugins in a child process, so the sidecar never runs Cranelift itself.
//!
//! Compiling a component pulls Cranelift's code (megabytes of the binary's text) and its
//! working heap into the process, and neither leaves: a proxy that compiled three plugins sat
//! at 35 MiB resident against 11 MiB without plugins. So the `switchyard` binary compiles in a
//! child, itself run as `switchyard internal-compile-plugin`: the child reads the component
//! from stdin, writes `Engine::precompile_component`'s output to stdout, and exits; the parent
//! loads the result with `Component::deserialize`, which maps the compiled code and nothing
//! else. Compiling is as slow as before (tens of milliseconds, plus a process start), and only
//! happens at load and reload, and only for files the cache has not seen.
//!
//! Library users (tests, benches) compile in-process: the child is enabled by the binary's
//! `main` with [`compile_in_child_process`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::OnceLock;

use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine;

/// The subcommand the child runs; hidden from `--help`.
pub const SUBCOMMAND: &str = "internal-compile-plugin";

/// Largest compiled artifact accepted from the child (a plugin is a few hundred KiB).
const MAX_ARTIFACT: u64 = 256 * 1024 * 1024;

static CHILD_EXE: OnceLock<PathBuf> = OnceLock::new();

/// Makes plugin compilation run in a child process of `exe`, which must be this same
/// `switchyard` binary. On Linux pass `/proc/self/exe`: it runs the very file this process
/// was started from, even if an upgrade has since replaced it on disk.
pub fn compile_in_child_process(exe: PathBuf) {
    let _ = CHILD_EXE.set(exe);
}

/// `Some(compiled)` when compilation runs in a child; `None` when it runs in-process: in
/// library use, or when the child cannot be started at all (a sandbox that forbids `exec`),
/// which costs memory, not plugins.
pub(super) fn compile(engine: &Engine, wasm: &[u8]) -> Option<Result<Component, String>> {
    let exe = CHILD_EXE.get()?;
    let mut child = match spawn(exe) {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!(
                "cannot start the plugin compiler ({}): {e}; compiling in-process",
                exe.display()
            );
            return None;
        }
    };
    Some(finish(&mut child, wasm).and_then(|artifact| load(engine, &artifact)))
}

fn spawn(exe: &Path) -> std::io::Result<Child> {
    Command::new(exe)
        .arg(SUBCOMMAND)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
}

/// Feeds the child `wasm`; its stdout is the artifact, its stderr the error.
fn finish(child: &mut Child, wasm: &[u8]) -> Result<Vec<u8>, String> {
    // The child reads all of stdin before it writes anything, so writing first cannot
    // deadlock. A write error means the child is gone; its exit status says why.
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(wasm);
    }
    let mut artifact = Vec::new();
    let mut stderr = String::new();
    let read = match child.stdout.take() {
        Some(out) => out.take(MAX_ARTIFACT + 1).read_to_end(&mut artifact),
        None => Ok(0),
    };
    if read.is_err() || artifact.len() as u64 > MAX_ARTIFACT {
        let _ = child.kill();
        let _ = child.wait();
        return Err(match read {
            Err(e) => format!("plugin compiler: {e}"),
            Ok(_) => "plugin compiler: artifact too large".into(),
        });
    }
    // Only a failing child writes to stderr (less than a pipe's buffer), as it exits.
    if let Some(err) = child.stderr.take() {
        let _ = err.take(64 * 1024).read_to_string(&mut stderr);
    }
    let status = child.wait().map_err(|e| format!("plugin compiler: {e}"))?;
    if !status.success() {
        let why = stderr.trim();
        return Err(if why.is_empty() {
            format!("plugin compiler failed ({status})")
        } else {
            why.to_owned()
        });
    }
    Ok(artifact)
}

/// Loads an artifact the child made.
#[allow(unsafe_code)]
fn load(engine: &Engine, artifact: &[u8]) -> Result<Component, String> {
    // SAFETY: `deserialize` trusts its input to be `precompile_component` output; it checks
    // the wasmtime version and engine settings recorded in it, but not the code. These bytes
    // are exactly what a child running this process's own executable wrote to a pipe only
    // this process reads, from an engine built by the same `engine::config`; nothing else
    // can write them, and they are never stored.
    unsafe { Component::deserialize(engine, artifact) }
        .map_err(|e| format!("cannot load the compiled plugin: {}", engine::describe(&e)))
}

fn write_all_and_flush(bytes: &[u8]) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)?;
    out.flush()
}

/// The child: component on stdin, compiled artifact on stdout, error on stderr.
pub fn child_main() -> ExitCode {
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut wasm) {
        eprintln!("cannot read the plugin: {e}");
        return ExitCode::FAILURE;
    }
    let compiled = Engine::new(&engine::config())
        .map_err(|e| format!("wasmtime engine: {}", engine::describe(&e)))
        .and_then(|engine| {
            engine
                .precompile_component(&wasm)
                .map_err(|e| engine::describe(&e))
        });
    match compiled {
        Ok(artifact) => match write_all_and_flush(&artifact) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cannot write the compiled plugin: {e}");
                ExitCode::FAILURE
            }
        },
        Err(e) => {
            // Short enough for the pipe's buffer: the parent reads stderr after stdout.
            let mut end = e.len().min(4096);
            while !e.is_char_boundary(end) {
                end -= 1;
            }
            eprintln!("{}", &e[..end]);
            ExitCode::FAILURE
        }
    }
}
