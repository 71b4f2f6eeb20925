//! The WASI 0.2 a plugin gets: what Rust's standard library imports, and nothing that reaches
//! outside the sidecar.
//!
//! Linked: `wasi:cli` (no arguments, no environment, empty stdin, stdout and stderr going to
//! the log), `wasi:clocks` (reading only), `wasi:random`, `wasi:io`, and `wasi:filesystem` with
//! no preopened directory, so no file can ever be opened. Not linked: `wasi:sockets`, so a
//! component that imports it fails to load with the missing name.
//!
//! Plugin calls are synchronous and run on the proxy's tokio worker threads. wasmtime-wasi's
//! synchronous bindings run their blocking operations (`blocking-flush`, `pollable.block`, ...)
//! through `Handle::block_on`, which panics inside a runtime. Those few functions are shadowed
//! here by versions that poll the operation once: the plugin's streams never block, so it is
//! always ready; anything that would wait (a sleep, a timer) traps instead of blocking a worker.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use wasmtime::component::{Linker, Resource, ResourceType};
use wasmtime::{StoreContextMut, format_err};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream, WasiCli, WasiCliView};
use wasmtime_wasi::clocks::{WasiClocks, WasiClocksView};
use wasmtime_wasi::filesystem::{WasiFilesystem, WasiFilesystemView};
use wasmtime_wasi::p2::bindings::{cli, clocks, filesystem, random, sync};
use wasmtime_wasi::p2::{DynOutputStream, OutputStream, Pollable, StreamError, StreamResult};
use wasmtime_wasi::random::WasiRandom;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_io::bindings::wasi::io::{poll as io_poll, streams as io_streams};
use wasmtime_wasi_io::poll::DynPollable;
use wasmtime_wasi_io::streams::DynInputStream;

use super::host::HostState;

/// The version wasmtime-wasi 48 defines WASI 0.2 interfaces at; guests importing any 0.2.x
/// resolve to it. The shadowing below must name the same instance.
const WASI_P2: &str = "0.2.12";

/// How much of one plugin output line is logged.
const MAX_LINE: usize = 1024;

/// Links the WASI subset described above, then shadows the blocking functions.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    type T = HostState;
    let l = &mut *linker;
    clocks::wall_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    clocks::monotonic_clock::add_to_linker::<T, WasiClocks>(l, T::clocks)?;
    filesystem::preopens::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    sync::filesystem::types::add_to_linker::<T, WasiFilesystem>(l, T::filesystem)?;
    random::random::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    random::insecure_seed::add_to_linker::<T, WasiRandom>(l, |t| t.wasi.random())?;
    cli::exit::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::environment::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_input::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_output::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdin::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stdout::add_to_linker::<T, WasiCli>(l, T::cli)?;
    cli::terminal_stderr::add_to_linker::<T, WasiCli>(l, T::cli)?;
    wasmtime_wasi_io::bindings::wasi::io::error::add_to_linker::<T, IoTable>(l, |t| &mut t.table)?;
    sync::io::poll::add_to_linker::<T, IoTable>(l, |t| &mut t.table)?;
    sync::io::streams::add_to_linker::<T, IoTable>(l, |t| &mut t.table)?;
    linker.allow_shadowing(true);
    shadow_blocking(linker)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `HasData` for the resource table, as wasmtime-wasi's own linking uses.
struct IoTable;

impl wasmtime::component::HasData for IoTable {
    type Data<'a> = &'a mut ResourceTable;
}

/// The WASI context of one instance: nothing inherited, output to the log.
pub fn context(plugin: &Arc<str>, service: &Arc<str>) -> WasiCtx {
    let out = |stream| LogOutput {
        plugin: plugin.clone(),
        service: service.clone(),
        stream,
    };
    WasiCtxBuilder::new()
        .stdout(out("stdout"))
        .stderr(out("stderr"))
        .build()
}

/// Polls `f` once: the value if it is ready, else a trap (a plugin may not block a worker).
fn ready_now<F: Future>(f: F, what: &str) -> wasmtime::Result<F::Output> {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => Ok(v),
        Poll::Pending => Err(format_err!(
            "plugin blocked in {what}; plugins may not wait on timers or I/O"
        )),
    }
}

type Cx<'a> = StoreContextMut<'a, HostState>;
type WitStreamResult<T> = wasmtime::Result<(Result<T, io_streams::StreamError>,)>;

/// A stream operation's result as the guest sees it; an error becomes a WIT `stream-error`.
fn wit_result<T>(table: &mut ResourceTable, r: StreamResult<T>) -> WitStreamResult<T> {
    match r {
        Ok(v) => Ok((Ok(v),)),
        Err(e) => Ok((Err(io_streams::Host::convert_stream_error(table, e)?),)),
    }
}

fn shadow_blocking(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use io_poll::HostPollable as _;
    use io_streams::{HostInputStream as _, HostOutputStream as _};

    let mut streams = linker.instance(&format!("wasi:io/streams@{WASI_P2}"))?;
    streams.resource(
        "output-stream",
        ResourceType::host::<DynOutputStream>(),
        |mut cx: Cx<'_>, rep| {
            let table = &mut cx.data_mut().table;
            let stream = Resource::<DynOutputStream>::new_own(rep);
            ready_now(
                io_streams::HostOutputStream::drop(table, stream),
                "output-stream.drop",
            )?
        },
    )?;
    streams.resource(
        "input-stream",
        ResourceType::host::<DynInputStream>(),
        |mut cx: Cx<'_>, rep| {
            let table = &mut cx.data_mut().table;
            let stream = Resource::<DynInputStream>::new_own(rep);
            ready_now(
                io_streams::HostInputStream::drop(table, stream),
                "input-stream.drop",
            )?
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut cx: Cx<'_>, (s, bytes): (Resource<DynOutputStream>, Vec<u8>)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(table.blocking_write_and_flush(s, bytes), "blocking-write")?;
            wit_result(table, r)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-flush",
        |mut cx: Cx<'_>, (s,): (Resource<DynOutputStream>,)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(table.blocking_flush(s), "blocking-flush")?;
            wit_result(table, r)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-write-zeroes-and-flush",
        |mut cx: Cx<'_>, (s, len): (Resource<DynOutputStream>, u64)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(
                table.blocking_write_zeroes_and_flush(s, len),
                "blocking-write-zeroes",
            )?;
            wit_result(table, r)
        },
    )?;
    streams.func_wrap(
        "[method]output-stream.blocking-splice",
        |mut cx: Cx<'_>,
         (dst, src, len): (Resource<DynOutputStream>, Resource<DynInputStream>, u64)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(table.blocking_splice(dst, src, len), "blocking-splice")?;
            wit_result(table, r)
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-read",
        |mut cx: Cx<'_>, (s, len): (Resource<DynInputStream>, u64)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(table.blocking_read(s, len), "blocking-read")?;
            wit_result(table, r)
        },
    )?;
    streams.func_wrap(
        "[method]input-stream.blocking-skip",
        |mut cx: Cx<'_>, (s, len): (Resource<DynInputStream>, u64)| {
            let table = &mut cx.data_mut().table;
            let r = ready_now(table.blocking_skip(s, len), "blocking-skip")?;
            wit_result(table, r)
        },
    )?;

    let mut poll = linker.instance(&format!("wasi:io/poll@{WASI_P2}"))?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut cx: Cx<'_>, (p,): (Resource<DynPollable>,)| {
            let table = &mut cx.data_mut().table;
            ready_now(table.block(p), "pollable.block")??;
            Ok(())
        },
    )?;
    poll.func_wrap(
        "[method]pollable.ready",
        |mut cx: Cx<'_>, (p,): (Resource<DynPollable>,)| {
            let table = &mut cx.data_mut().table;
            Ok((ready_now(table.ready(p), "pollable.ready")??,))
        },
    )?;
    poll.func_wrap(
        "poll",
        |mut cx: Cx<'_>, (list,): (Vec<Resource<DynPollable>>,)| {
            let table = &mut cx.data_mut().table;
            Ok((ready_now(io_poll::Host::poll(table, list), "poll")??,))
        },
    )?;

    // Timers would park a proxy worker thread: a plugin that sleeps traps at once.
    let mut clock = linker.instance(&format!("wasi:clocks/monotonic-clock@{WASI_P2}"))?;
    clock.func_wrap(
        "subscribe-duration",
        |_cx: Cx<'_>, (_ns,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(format_err!(
                "plugins may not sleep (monotonic-clock.subscribe-duration)"
            ))
        },
    )?;
    clock.func_wrap(
        "subscribe-instant",
        |_cx: Cx<'_>, (_at,): (u64,)| -> wasmtime::Result<(Resource<DynPollable>,)> {
            Err(format_err!(
                "plugins may not sleep (monotonic-clock.subscribe-instant)"
            ))
        },
    )?;
    Ok(())
}

/// A plugin's stdout or stderr: complete lines go to the log, tagged with plugin and service
/// (a Rust panic message arrives here before the trap).
struct LogOutput {
    plugin: Arc<str>,
    service: Arc<str>,
    stream: &'static str,
}

impl LogOutput {
    fn sink(&self) -> LogSink {
        LogSink {
            plugin: self.plugin.clone(),
            service: self.service.clone(),
            stream: self.stream,
            line: Vec::new(),
        }
    }
}

impl IsTerminal for LogOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.sink())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.sink())
    }
}

/// Buffers one line at a time; never blocks, never refuses bytes.
struct LogSink {
    plugin: Arc<str>,
    service: Arc<str>,
    stream: &'static str,
    line: Vec<u8>,
}

impl LogSink {
    fn push(&mut self, bytes: &[u8]) {
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            let room = MAX_LINE.saturating_sub(self.line.len());
            let (body, newline) = match chunk.strip_suffix(b"\n") {
                Some(body) => (body, true),
                None => (chunk, false),
            };
            self.line.extend_from_slice(&body[..body.len().min(room)]);
            if newline {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        tracing::warn!(plugin = %self.plugin, service = %self.service, stream = self.stream,
            "plugin output: {text}");
        self.line.clear();
    }
}

impl Drop for LogSink {
    fn drop(&mut self) {
        self.emit();
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogSink {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogSink {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LogSink {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
