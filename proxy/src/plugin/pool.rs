//! Warm instances of one plugin: take one, call it under a deadline, put it back.
//!
//! Instantiating a component costs tens of microseconds and its `init` more, so instances are
//! kept and reused across requests: a lock-free queue of ready (store, bindings) pairs that
//! every worker thread takes from and returns to. A call that fails in any way drops its
//! instance (a trapped instance cannot be entered again); the next call makes a fresh one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_queue::ArrayQueue;
use wasmtime::{Store, Trap, UpdateDeadline};

use super::bindings::{Policy, PolicyPre};
use super::engine;
use super::host::{HostState, Overtime, PluginShared};

/// Deadline of one hook call, in epoch ticks ([`engine::TICK`], 5 ms): a plugin answers in
/// microseconds, so 10 ms means it is stuck.
///
/// Epochs measure wall time, and on a busy machine a thread can be descheduled for longer
/// than that in the middle of a call. So when the deadline passes the call is not stopped
/// yet: it is given [`CPU_GRACE`] more of its thread's own CPU time, checked every tick, and
/// stopped when it has used that (a plugin that spins: about 20 ms in all) or after
/// [`MAX_OVERTIME_TICKS`] whatever happens. Calls that finish in time pay nothing for this.
pub const CALL_DEADLINE_TICKS: u64 = 2;
/// CPU time a call may still use once its wall-clock deadline has passed.
pub const CPU_GRACE: Duration = Duration::from_millis(10);
/// Ticks after the deadline at which a call is stopped even if its thread barely ran.
pub const MAX_OVERTIME_TICKS: u64 = 200;
/// Deadline of instantiation plus `init` (config parsing may do real work once).
pub const INIT_DEADLINE_TICKS: u64 = 200;
/// Warm instances kept per plugin (calls beyond this many at once make and drop extras).
pub const POOL_SIZE: usize = 16;
/// Instances made when a plugin is loaded, so the first requests find them warm.
pub const PREWARM: usize = 2;

/// Why a plugin call did not produce an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The plugin trapped (a panic, an out-of-bounds access, a host-refused operation).
    Trap,
    /// It ran past its deadline.
    Deadline,
    /// It tried to grow its memory past the cap.
    Memory,
    /// It answered something impossible (an unknown region, a bad status).
    BadDecision,
    /// A fresh instance could not be made or its `init` failed.
    Init,
}

impl FaultKind {
    pub const ALL: [FaultKind; 5] = [
        FaultKind::Trap,
        FaultKind::Deadline,
        FaultKind::Memory,
        FaultKind::BadDecision,
        FaultKind::Init,
    ];

    /// The `kind` label of the plugin error metric.
    pub fn as_str(self) -> &'static str {
        match self {
            FaultKind::Trap => "trap",
            FaultKind::Deadline => "deadline",
            FaultKind::Memory => "memory",
            FaultKind::BadDecision => "bad-decision",
            FaultKind::Init => "init",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    pub message: String,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// One ready instance.
pub struct Warm {
    pub store: Store<HostState>,
    pub plugin: Policy,
}

/// A loaded plugin: how to make instances, and the warm ones.
pub struct Instances {
    pre: PolicyPre<HostState>,
    /// `init`'s argument: the plugin's config as JSON.
    config: String,
    pub shared: Arc<PluginShared>,
    warm: ArrayQueue<Warm>,
}

impl Instances {
    pub fn new(pre: PolicyPre<HostState>, config: String, shared: Arc<PluginShared>) -> Self {
        Instances {
            pre,
            config,
            shared,
            warm: ArrayQueue::new(POOL_SIZE),
        }
    }

    /// Makes a fresh instance and runs `init` on it, under [`INIT_DEADLINE_TICKS`].
    pub fn instantiate(&self) -> Result<Warm, Fault> {
        let engine = engine::engine().map_err(|message| Fault {
            kind: FaultKind::Init,
            message,
        })?;
        let mut store = Store::new(engine, HostState::new(self.shared.clone()));
        store.limiter(|s| &mut s.limits);
        store.set_epoch_deadline(INIT_DEADLINE_TICKS);
        store.epoch_deadline_callback(|mut cx| on_deadline(cx.data_mut()));
        let init_fault = |e: wasmtime::Error, store: &Store<HostState>| {
            let fault = classify(&e, store, INIT_DEADLINE_TICKS);
            Fault {
                kind: FaultKind::Init,
                message: match fault.kind {
                    FaultKind::Trap => fault.message,
                    other => format!("{} during init: {}", other.as_str(), fault.message),
                },
            }
        };
        let plugin = match self.pre.instantiate(&mut store) {
            Ok(p) => p,
            Err(e) => return Err(init_fault(e, &store)),
        };
        let hooks = plugin.switchyard_policy_plugin();
        match super::host::with_request(None, None, || hooks.call_init(&mut store, &self.config)) {
            Ok(Ok(())) => Ok(Warm { store, plugin }),
            Ok(Err(refused)) => Err(Fault {
                kind: FaultKind::Init,
                message: format!("init failed: {refused}"),
            }),
            Err(e) => Err(init_fault(e, &store)),
        }
    }

    /// Fills the pool with `n` instances (fewer if the pool is full).
    pub fn prewarm(&self, n: usize) -> Result<(), Fault> {
        for _ in 0..n.min(POOL_SIZE) {
            let warm = self.instantiate()?;
            if self.warm.push(warm).is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Runs `f` on a warm instance under [`CALL_DEADLINE_TICKS`]. On success the instance
    /// goes back to the pool; on any error it is dropped.
    pub fn call<R>(
        &self,
        f: impl FnOnce(&mut Store<HostState>, &Policy) -> wasmtime::Result<R>,
    ) -> Result<R, Fault> {
        let mut warm = match self.warm.pop() {
            Some(w) => w,
            None => self.instantiate()?,
        };
        warm.store.set_epoch_deadline(CALL_DEADLINE_TICKS);
        warm.store.data_mut().overtime = None;
        match f(&mut warm.store, &warm.plugin) {
            Ok(r) => {
                // A full pool means more instances exist than are kept: drop this one.
                let _ = self.warm.push(warm);
                Ok(r)
            }
            Err(e) => Err(classify(&e, &warm.store, CALL_DEADLINE_TICKS)),
        }
    }
}

/// The wall-clock deadline of a call passed: grant CPU-time grace, or stop it (see
/// [`CALL_DEADLINE_TICKS`]).
fn on_deadline(state: &mut HostState) -> wasmtime::Result<UpdateDeadline> {
    let Some(cpu) = thread_cpu_time() else {
        return Ok(UpdateDeadline::Interrupt);
    };
    match &mut state.overtime {
        None => {
            state.overtime = Some(Overtime {
                cpu_at_deadline: cpu,
                ticks: 1,
            });
            Ok(UpdateDeadline::Continue(1))
        }
        Some(o)
            if cpu.saturating_sub(o.cpu_at_deadline) < CPU_GRACE
                && o.ticks < MAX_OVERTIME_TICKS =>
        {
            o.ticks += 1;
            Ok(UpdateDeadline::Continue(1))
        }
        Some(_) => Ok(UpdateDeadline::Interrupt),
    }
}

/// CPU time the calling thread has used.
fn thread_cpu_time() -> Option<Duration> {
    use nix::time::{ClockId, clock_gettime};
    let t = clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).ok()?;
    let secs = u64::try_from(t.tv_sec()).ok()?;
    let nanos = u32::try_from(t.tv_nsec()).ok()?;
    Some(Duration::new(secs, nanos))
}

/// Which fault an error from a call is.
fn classify(e: &wasmtime::Error, store: &Store<HostState>, ticks: u64) -> Fault {
    let message = engine::describe(e);
    let kind = if store.data().limits.memory_exceeded {
        FaultKind::Memory
    } else if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) {
        FaultKind::Deadline
    } else {
        FaultKind::Trap
    };
    let message = match kind {
        FaultKind::Deadline => format!(
            "ran past its deadline of {} ms (and {} ms of CPU time after it)",
            u128::from(ticks) * engine::TICK.as_millis(),
            CPU_GRACE.as_millis()
        ),
        _ => message,
    };
    Fault { kind, message }
}
