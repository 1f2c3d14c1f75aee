//! The connections and the waiting: one runtime thread per process that owns
//! every connection to the server.
//!
//! (About 1,000 lines, past the usual 400: one state machine whose parts, the
//! holding connection, the listener, the waiting slots and the acquire loop,
//! all read and write the same runtime-local state; split by connection role,
//! each file would take that state whole and call into the others.)
//!
//! Connections, whatever the number of locks held or awaited:
//! - one **holding** connection: every lock of the process is taken on it
//!   with a non-blocking `pg_try_advisory_lock` (inside the `acquire`
//!   function, which also takes the fencing token and writes the holder row);
//!   it is pinged every [`PING_EVERY`] while anything is held or awaited, and a
//!   ping that fails or takes longer than [`PING_TIMEOUT`] ends it: the epoch
//!   advances and every lease taken on it is lost;
//! - at most `poolSize` **waiting** connections, opened on the first wait:
//!   one listens for the NOTIFY that every release sends (so a release on any
//!   host wakes the waiters at once), the others (`poolSize - 1`) each wait in
//!   the server's own lock queue for one awaited lock (`pg_advisory_lock`, then
//!   unlock and NOTIFY): they wake when the holder dies without a word
//!   (SIGKILL, a host cut off and dropped by keepalive), since the server frees
//!   a dead connection's locks at once. Awaited locks beyond those slots wake
//!   on every NOTIFY and otherwise retry every [`UNCOVERED_RETRY`] (a fixed
//!   backstop, never a ramp).
//!
//! Guarantees: a grant is only reported for a lock the holding connection
//! holds at that moment; an acquire that is cancelled or times out never
//! leaves a lock behind (a statement in flight is never abandoned: the wait
//! between attempts is what is cancelled); a lost waiting connection fails
//! every waiter at once with a coded error; nothing falls back to local-only.
//! Not guaranteed: that a lease is still valid after its epoch ended (the
//! caller compares [`Engine::epoch`]), nor cross-process FIFO order (the
//! server's queue orders the waiting slots; the NOTIFY path is a race).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::poll_fn;
use tokio::sync::{mpsc, Notify};
use tokio::task::{spawn_local, JoinHandle};
use tokio_postgres::error::SqlState;
use tokio_postgres::{AsyncMessage, CancelToken, Client, NoTls, Statement};

use super::config::BackendConfig;
use super::error::{PgError, LOST};
use super::key;
use super::sql;

/// How often the holding connection is checked while it holds or waits.
pub const PING_EVERY: Duration = Duration::from_millis(500);
/// A check not answered within this long ends the holding connection.
pub const PING_TIMEOUT: Duration = Duration::from_millis(2000);
/// Retry interval of an awaited lock no waiting slot covers.
pub const UNCOVERED_RETRY: Duration = Duration::from_millis(1000);

/// Who holds (written to the holder row).
#[derive(Debug, Clone)]
pub struct HolderInfo {
    pub pid: i32,
    pub hostname: String,
    pub boot_id: Option<String>,
    pub max_hold_ms: Option<i64>,
}

/// A lock granted on the holding connection of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    pub token: i64,
    pub epoch: u64,
}

/// Why an acquire ended without a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcquireError {
    /// The timeout passed; the current holder as its row names it.
    Busy {
        pid: Option<i32>,
        hostname: Option<String>,
    },
    /// Cancelled by the caller.
    Cancelled,
    Failed(PgError),
}

/// One row of `inspect`.
#[derive(Debug, Clone)]
pub struct InspectRow {
    pub key: String,
    pub fencing_token: i64,
    pub pid: i32,
    pub hostname: String,
    pub boot_id: Option<String>,
    pub acquired_at: String,
    pub max_hold_ms: Option<i64>,
    pub backend_pid: i32,
    /// true: the holder; false: a session queued on the lock.
    pub granted: bool,
    pub client_addr: Option<String>,
}

type Reply<T> = Box<dyn FnOnce(T) + Send>;

enum Cmd {
    Acquire {
        req: u64,
        key: String,
        holder: HolderInfo,
        timeout: Option<Duration>,
        reply: Reply<Result<Grant, AcquireError>>,
    },
    Cancel {
        req: u64,
    },
    Release {
        key: String,
        token: i64,
        epoch: u64,
        reply: Option<Reply<bool>>,
    },
    Check {
        key: String,
        token: i64,
        epoch: u64,
        reply: Reply<Result<bool, PgError>>,
    },
    Inspect {
        reply: Reply<Result<Vec<InspectRow>, PgError>>,
    },
    Close,
}

/// Counters readable from any thread.
#[derive(Debug, Default)]
pub struct Stats {
    /// Generation of the holding connection; advances when it is lost.
    epoch: AtomicU64,
    connections: AtomicUsize,
    max_connections: AtomicUsize,
    holds: AtomicUsize,
}

/// A handle on the runtime thread. Dropping it closes every connection.
pub struct Engine {
    tx: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Stats>,
    config: BackendConfig,
}

impl Engine {
    /// Start the runtime thread (no connection is opened until first use).
    pub fn start(config: BackendConfig) -> Result<Engine, PgError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Stats::default());
        stats.epoch.store(1, Ordering::SeqCst);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                PgError::new(
                    super::error::io_code(&e, super::error::OTHER),
                    format!("PostgreSQL backend: cannot create its runtime: {e}"),
                )
            })?;
        let cfg = config.clone();
        let st = stats.clone();
        std::thread::Builder::new()
            .name("swl-postgres".into())
            .spawn(move || {
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, run(cfg, st, rx));
            })
            .map_err(|e| {
                PgError::new(
                    super::error::io_code(&e, "EAGAIN"),
                    format!("PostgreSQL backend: cannot start its thread: {e}"),
                )
            })?;
        Ok(Engine { tx, stats, config })
    }

    pub fn config(&self) -> &BackendConfig {
        &self.config
    }

    /// The key of a session file (absolute, normalized).
    pub fn key_of(&self, session: &std::path::Path) -> String {
        key::session_key(&self.config.keyspace, &self.config.sessions_root, session)
    }

    /// The current holding-connection generation: a grant of an older epoch is lost.
    pub fn epoch(&self) -> u64 {
        self.stats.epoch.load(Ordering::SeqCst)
    }

    /// (open connections now, most ever open at once, locks held).
    pub fn connections(&self) -> (usize, usize, usize) {
        (
            self.stats.connections.load(Ordering::SeqCst),
            self.stats.max_connections.load(Ordering::SeqCst),
            self.stats.holds.load(Ordering::SeqCst),
        )
    }

    fn send(&self, cmd: Cmd) -> Result<(), PgError> {
        self.tx
            .send(cmd)
            .map_err(|_| PgError::new(LOST, "PostgreSQL backend: its runtime thread has stopped"))
    }

    /// Acquire `key`; `reply` is called once, on the runtime thread.
    pub fn acquire(
        &self,
        req: u64,
        key: String,
        holder: HolderInfo,
        timeout: Option<Duration>,
        reply: Reply<Result<Grant, AcquireError>>,
    ) {
        if let Err(e) = self.tx.send(Cmd::Acquire {
            req,
            key,
            holder,
            timeout,
            reply,
        }) {
            if let Cmd::Acquire { reply, .. } = e.0 {
                reply(Err(AcquireError::Failed(PgError::new(
                    LOST,
                    "PostgreSQL backend: its runtime thread has stopped",
                ))))
            }
        }
    }

    /// Cancel a pending acquire (its reply says `Cancelled`, or it was granted already).
    pub fn cancel(&self, req: u64) {
        let _ = self.send(Cmd::Cancel { req });
    }

    /// Release a grant (nothing happens if its epoch ended: the server freed it).
    pub fn release(&self, key: String, grant: Grant, reply: Option<Reply<bool>>) {
        let _ = self.send(Cmd::Release {
            key,
            token: grant.token,
            epoch: grant.epoch,
            reply,
        });
    }

    /// Whether the grant is still held, asking the server.
    pub fn check(&self, key: String, grant: Grant, reply: Reply<Result<bool, PgError>>) {
        if grant.epoch != self.epoch() {
            reply(Ok(false));
            return;
        }
        if let Err(e) = self.tx.send(Cmd::Check {
            key,
            token: grant.token,
            epoch: grant.epoch,
            reply,
        }) {
            if let Cmd::Check { reply, .. } = e.0 {
                reply(Ok(false))
            }
        }
    }

    /// Holders and queued sessions as the server sees them.
    pub fn inspect(&self, reply: Reply<Result<Vec<InspectRow>, PgError>>) {
        if let Err(e) = self.tx.send(Cmd::Inspect { reply }) {
            if let Cmd::Inspect { reply, .. } = e.0 {
                reply(Err(PgError::new(LOST, "PostgreSQL backend: stopped")))
            }
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Close);
    }
}

// ------------------------------------------------------------ runtime side

struct Holding {
    client: Rc<Client>,
    /// Prepared once per connection: one round trip per acquire or release.
    acquire: Statement,
    release: Statement,
    epoch: u64,
    task: JoinHandle<()>,
}

struct Waiter {
    req: u64,
    since: Instant,
    wake: Rc<Notify>,
    fail: FailCell,
    slot: Option<usize>,
    /// Its slot saw the lock free and woke it: it is about to try on the
    /// holding connection, so no slot waits for this lock until that try
    /// fails (a slot queued behind this process's own grant would sit there
    /// until its cancel landed, or for good if the cancel came first).
    woken: bool,
}

#[derive(Default)]
struct Slot {
    client: Option<Rc<Client>>,
    cancel: Option<CancelToken>,
    task: Option<JoinHandle<()>>,
    busy_with: Option<i64>,
    connecting: bool,
}

struct Req {
    cancel: Rc<Notify>,
    cancelled: Rc<Cell<bool>>,
}

struct St {
    cfg: BackendConfig,
    stats: Arc<Stats>,
    holding: Option<Holding>,
    connect_lock: Rc<tokio::sync::Mutex<()>>,
    listen_lock: Rc<tokio::sync::Mutex<()>>,
    schema_ready: bool,
    waiters: HashMap<i64, Waiter>,
    reqs: HashMap<u64, Req>,
    listener: Option<(Rc<Client>, JoinHandle<()>)>,
    slots: Vec<Slot>,
    acquire_sql: String,
    release_sql: String,
    check_sql: String,
    holder_sql: String,
    channel: String,
}

type S = Rc<RefCell<St>>;
/// Where a waiting connection's failure is left for its waiter.
type FailCell = Rc<RefCell<Option<PgError>>>;

async fn run(cfg: BackendConfig, stats: Arc<Stats>, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let schema = cfg.schema.clone();
    let slots = (0..cfg.pool_size.saturating_sub(1))
        .map(|_| Slot::default())
        .collect();
    let s: S = Rc::new(RefCell::new(St {
        channel: cfg.channel(),
        cfg,
        stats,
        holding: None,
        connect_lock: Rc::new(tokio::sync::Mutex::new(())),
        listen_lock: Rc::new(tokio::sync::Mutex::new(())),
        schema_ready: false,
        waiters: HashMap::new(),
        reqs: HashMap::new(),
        listener: None,
        slots,
        acquire_sql: sql::acquire(&schema),
        release_sql: sql::release(&schema),
        check_sql: sql::check(&schema),
        holder_sql: sql::holder_of(&schema),
    }));
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Cmd::Acquire {
                req,
                key,
                holder,
                timeout,
                reply,
            } => {
                let s = s.clone();
                spawn_local(async move {
                    let r = acquire(&s, req, key, holder, timeout).await;
                    reply(r);
                });
            }
            Cmd::Cancel { req } => {
                if let Some(r) = s.borrow().reqs.get(&req) {
                    r.cancelled.set(true);
                    r.cancel.notify_one();
                }
            }
            Cmd::Release {
                key,
                token,
                epoch,
                reply,
            } => {
                let s = s.clone();
                spawn_local(async move {
                    let ok = release(&s, key, token, epoch).await;
                    if let Some(reply) = reply {
                        reply(ok);
                    }
                });
            }
            Cmd::Check {
                key,
                token,
                epoch,
                reply,
            } => {
                let s = s.clone();
                spawn_local(async move { reply(check(&s, key, token, epoch).await) });
            }
            Cmd::Inspect { reply } => {
                let s = s.clone();
                spawn_local(async move { reply(inspect(&s).await) });
            }
            Cmd::Close => break,
        }
    }
    // Close everything: the server frees the locks of closed connections.
    let mut st = s.borrow_mut();
    if let Some(h) = st.holding.take() {
        h.task.abort();
    }
    if let Some((_, t)) = st.listener.take() {
        t.abort();
    }
    for slot in st.slots.iter_mut() {
        if let Some(t) = slot.task.take() {
            t.abort();
        }
    }
}

/// Counts an open connection for as long as it lives: created when the
/// connection is made, dropped with the task that drives it (also on abort).
struct Open(Arc<Stats>);

impl Open {
    fn new(stats: &Arc<Stats>) -> Open {
        let n = stats.connections.fetch_add(1, Ordering::SeqCst) + 1;
        stats.max_connections.fetch_max(n, Ordering::SeqCst);
        Open(stats.clone())
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.0.connections.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The holding connection (connected, with the schema in place), and its epoch.
async fn holding(s: &S) -> Result<(Rc<Client>, u64, Statement), PgError> {
    let lock = s.borrow().connect_lock.clone();
    let _g = lock.lock().await;
    if let Some(h) = &s.borrow().holding {
        return Ok((h.client.clone(), h.epoch, h.acquire.clone()));
    }
    let (cfg, stats) = {
        let st = s.borrow();
        (st.cfg.clone(), st.stats.clone())
    };
    let (client, conn) = cfg
        .pg
        .connect(NoTls)
        .await
        .map_err(|e| PgError::from_client(&e, &cfg.server, "connect"))?;
    let open = Open::new(&stats);
    let epoch = stats.epoch.load(Ordering::SeqCst);
    let client = Rc::new(client);
    let s2 = s.clone();
    let task = spawn_local(async move {
        let _open = open;
        let _ = conn.await;
        holding_lost(&s2, epoch);
    });
    if !s.borrow().schema_ready {
        let (ready, unlogged) = match client.query_one(&sql::ready(&cfg.schema), &[]).await {
            Ok(row) => (
                row.get::<_, Option<bool>>(0).unwrap_or(false),
                row.get::<_, Option<bool>>(1).unwrap_or(false),
            ),
            Err(_) => (false, false),
        };
        let r = if !ready {
            client.batch_execute(&sql::ddl(&cfg.schema)).await
        } else if !unlogged {
            client.batch_execute(&sql::upgrade(&cfg.schema)).await
        } else {
            Ok(())
        };
        if let Err(e) = r {
            task.abort();
            return Err(PgError::from_client(&e, &cfg.server, "create schema"));
        }
        s.borrow_mut().schema_ready = true;
    }
    let (acq_sql, rel_sql) = {
        let st = s.borrow();
        (st.acquire_sql.clone(), st.release_sql.clone())
    };
    let (acquire, release) =
        match tokio::try_join!(client.prepare(&acq_sql), client.prepare(&rel_sql)) {
            Ok(p) => p,
            Err(e) => {
                task.abort();
                return Err(PgError::from_client(&e, &cfg.server, "prepare"));
            }
        };
    s.borrow_mut().holding = Some(Holding {
        client: client.clone(),
        acquire: acquire.clone(),
        release,
        epoch,
        task,
    });
    spawn_local(pinger(s.clone(), client.clone(), epoch));
    Ok((client, epoch, acquire))
}

/// The holding connection of `epoch` ended or stopped answering: every lease
/// on it is lost. Idempotent per epoch.
fn holding_lost(s: &S, epoch: u64) {
    let mut st = s.borrow_mut();
    let current = matches!(&st.holding, Some(h) if h.epoch == epoch);
    if !current {
        return;
    }
    let h = st.holding.take().expect("checked");
    h.task.abort();
    st.stats.epoch.fetch_add(1, Ordering::SeqCst);
    st.stats.holds.store(0, Ordering::SeqCst);
}

async fn pinger(s: S, client: Rc<Client>, epoch: u64) {
    loop {
        tokio::time::sleep(PING_EVERY).await;
        let (alive, busy) = {
            let st = s.borrow();
            (
                matches!(&st.holding, Some(h) if h.epoch == epoch),
                st.stats.holds.load(Ordering::SeqCst) > 0 || !st.waiters.is_empty(),
            )
        };
        if !alive {
            return;
        }
        if !busy {
            continue;
        }
        match tokio::time::timeout(PING_TIMEOUT, client.simple_query("SELECT 1")).await {
            Ok(Ok(_)) => {}
            _ => {
                holding_lost(&s, epoch);
                return;
            }
        }
    }
}

/// One attempt on the holding connection: Some(token) if granted.
async fn try_once(
    s: &S,
    client: &Client,
    stmt: &Statement,
    key: &str,
    holder: &HolderInfo,
) -> Result<Option<i64>, PgError> {
    let server = s.borrow().cfg.server.clone();
    let id = key::lock_id(key);
    let row = client
        .query_one(
            stmt,
            &[
                &id,
                &key,
                &holder.pid,
                &holder.hostname,
                &holder.boot_id,
                &holder.max_hold_ms,
            ],
        )
        .await
        .map_err(|e| PgError::from_client(&e, &server, "acquire"))?;
    let tok: Option<i64> = row.get(0);
    Ok(tok)
}

async fn acquire(
    s: &S,
    req: u64,
    key: String,
    holder: HolderInfo,
    timeout: Option<Duration>,
) -> Result<Grant, AcquireError> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let cancel = Rc::new(Notify::new());
    let cancelled = Rc::new(Cell::new(false));
    s.borrow_mut().reqs.insert(
        req,
        Req {
            cancel: cancel.clone(),
            cancelled: cancelled.clone(),
        },
    );
    let id = key::lock_id(&key);
    let r = acquire_loop(s, req, id, &key, &holder, deadline, &cancel, &cancelled).await;
    // Leave nothing behind: the waiter entry, its waiting slot, the request.
    let slot = {
        let mut st = s.borrow_mut();
        st.reqs.remove(&req);
        match st.waiters.get(&id) {
            Some(w) if w.req == req => st.waiters.remove(&id).and_then(|w| w.slot),
            _ => None,
        }
    };
    if let Some(i) = slot {
        let token = s.borrow().slots[i].cancel.clone();
        if let Some(t) = token {
            spawn_local(async move {
                let _ = t.cancel_query(NoTls).await;
            });
        }
    }
    match r {
        Ok(g) => {
            s.borrow().stats.holds.fetch_add(1, Ordering::SeqCst);
            Ok(g)
        }
        Err(AcquireError::Busy { .. }) => Err(busy_holder(s, &key).await),
        Err(e) => Err(e),
    }
}

/// Races `fut` against the deadline and the cancel signal.
async fn bounded<T>(
    fut: impl std::future::Future<Output = T>,
    deadline: Option<tokio::time::Instant>,
    cancel: &Notify,
    cancelled: &Cell<bool>,
) -> Result<T, AcquireError> {
    if cancelled.get() {
        return Err(AcquireError::Cancelled);
    }
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        v = fut => Ok(v),
        _ = sleep => Err(AcquireError::Busy { pid: None, hostname: None }),
        _ = cancel.notified() => Err(AcquireError::Cancelled),
    }
}

#[allow(clippy::too_many_arguments)]
async fn acquire_loop(
    s: &S,
    req: u64,
    id: i64,
    key: &str,
    holder: &HolderInfo,
    deadline: Option<tokio::time::Instant>,
    cancel: &Notify,
    cancelled: &Cell<bool>,
) -> Result<Grant, AcquireError> {
    let mut registered: Option<(Rc<Notify>, FailCell)> = None;
    loop {
        let (client, epoch, stmt) = bounded(holding(s), deadline, cancel, cancelled)
            .await?
            .map_err(AcquireError::Failed)?;
        // Never raced: a statement in flight may take the lock, and its
        // answer must be seen.
        let tok = try_once(s, &client, &stmt, key, holder)
            .await
            .map_err(AcquireError::Failed)?;
        if let Some(token) = tok {
            if cancelled.get() {
                let _ = release(s, key.to_string(), token, epoch).await;
                return Err(AcquireError::Cancelled);
            }
            return Ok(Grant { token, epoch });
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            return Err(AcquireError::Busy {
                pid: None,
                hostname: None,
            });
        }
        let (wake, fail) = match &registered {
            Some(r) => r.clone(),
            None => {
                // Listen first, then try once more: a release between the
                // failed attempt and the LISTEN would otherwise be missed.
                bounded(ensure_listener(s), deadline, cancel, cancelled)
                    .await?
                    .map_err(AcquireError::Failed)?;
                let wake = Rc::new(Notify::new());
                let fail = Rc::new(RefCell::new(None));
                s.borrow_mut().waiters.insert(
                    id,
                    Waiter {
                        req,
                        since: Instant::now(),
                        wake: wake.clone(),
                        fail: fail.clone(),
                        slot: None,
                        woken: false,
                    },
                );
                registered = Some((wake, fail));
                assign_slots(s);
                continue;
            }
        };
        // The try failed: a slot may wait for this lock again.
        if let Some(w) = s.borrow_mut().waiters.get_mut(&id) {
            w.woken = false;
        }
        assign_slots(s);
        let covered = s
            .borrow()
            .waiters
            .get(&id)
            .is_some_and(|w| w.slot.is_some());
        let wait = async {
            if covered {
                wake.notified().await
            } else {
                tokio::select! {
                    _ = wake.notified() => {},
                    _ = tokio::time::sleep(UNCOVERED_RETRY) => {},
                }
            }
        };
        bounded(wait, deadline, cancel, cancelled).await?;
        let failed = fail.borrow_mut().take();
        if let Some(e) = failed {
            return Err(AcquireError::Failed(e));
        }
    }
}

async fn busy_holder(s: &S, key: &str) -> AcquireError {
    let client = s.borrow().holding.as_ref().map(|h| h.client.clone());
    let q = s.borrow().holder_sql.clone();
    if let Some(c) = client {
        if let Ok(Ok(Some(row))) =
            tokio::time::timeout(Duration::from_secs(1), c.query_opt(&q, &[&key])).await
        {
            return AcquireError::Busy {
                pid: row.get(0),
                hostname: row.get(1),
            };
        }
    }
    AcquireError::Busy {
        pid: None,
        hostname: None,
    }
}

/// The listening connection (LISTEN done before this returns).
async fn ensure_listener(s: &S) -> Result<(), PgError> {
    let lock = s.borrow().listen_lock.clone();
    let _g = lock.lock().await;
    if s.borrow().listener.is_some() {
        return Ok(());
    }
    let (cfg, stats, channel) = {
        let st = s.borrow();
        (st.cfg.clone(), st.stats.clone(), st.channel.clone())
    };
    let (client, mut conn) = cfg
        .pg
        .connect(NoTls)
        .await
        .map_err(|e| PgError::from_client(&e, &cfg.server, "connect"))?;
    let open = Open::new(&stats);
    let s2 = s.clone();
    let server = cfg.server.clone();
    let task = spawn_local(async move {
        let _open = open;
        loop {
            match poll_fn(|cx| conn.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    if let Ok(id) = n.payload().parse::<i64>() {
                        if let Some(w) = s2.borrow().waiters.get(&id) {
                            w.wake.notify_one();
                        }
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        waiting_lost(
            &s2,
            PgError::new(
                LOST,
                format!("PostgreSQL backend: the waiting connection to {server} was lost"),
            ),
        );
    });
    let client = Rc::new(client);
    if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
        task.abort();
        return Err(PgError::from_client(&e, &cfg.server, "listen"));
    }
    s.borrow_mut().listener = Some((client, task));
    Ok(())
}

/// A waiting connection failed: fail every waiter at once, close the others.
fn waiting_lost(s: &S, err: PgError) {
    let mut st = s.borrow_mut();
    if let Some((_, t)) = st.listener.take() {
        t.abort();
    }
    for slot in st.slots.iter_mut() {
        slot.client = None;
        slot.cancel = None;
        if let Some(t) = slot.task.take() {
            t.abort();
        }
    }
    for w in st.waiters.values_mut() {
        w.slot = None;
        *w.fail.borrow_mut() = Some(err.clone());
        w.wake.notify_one();
    }
}

/// Give free waiting slots to the longest-waiting uncovered locks.
fn assign_slots(s: &S) {
    loop {
        let pick = {
            let st = s.borrow();
            let free = st
                .slots
                .iter()
                .position(|sl| sl.busy_with.is_none() && !sl.connecting);
            let oldest = st
                .waiters
                .iter()
                .filter(|(_, w)| w.slot.is_none() && !w.woken)
                .min_by_key(|(_, w)| w.since)
                .map(|(id, _)| *id);
            match (free, oldest) {
                (Some(i), Some(id)) => Some((i, id)),
                _ => None,
            }
        };
        let Some((i, id)) = pick else { return };
        {
            let mut st = s.borrow_mut();
            st.slots[i].busy_with = Some(id);
            if let Some(w) = st.waiters.get_mut(&id) {
                w.slot = Some(i);
            }
        }
        spawn_local(run_slot(s.clone(), i, id));
    }
}

async fn slot_client(s: &S, i: usize) -> Result<Rc<Client>, PgError> {
    if let Some(c) = &s.borrow().slots[i].client {
        return Ok(c.clone());
    }
    s.borrow_mut().slots[i].connecting = true;
    let (cfg, stats) = {
        let st = s.borrow();
        (st.cfg.clone(), st.stats.clone())
    };
    let r = cfg.pg.connect(NoTls).await;
    s.borrow_mut().slots[i].connecting = false;
    let (client, conn) = r.map_err(|e| PgError::from_client(&e, &cfg.server, "connect"))?;
    let open = Open::new(&stats);
    let s2 = s.clone();
    let server = cfg.server.clone();
    let task = spawn_local(async move {
        let _open = open;
        let _ = conn.await;
        let mine = s2.borrow().slots[i].client.is_some();
        if mine {
            waiting_lost(
                &s2,
                PgError::new(
                    LOST,
                    format!("PostgreSQL backend: a waiting connection to {server} was lost"),
                ),
            );
        }
    });
    let client = Rc::new(client);
    let mut st = s.borrow_mut();
    st.slots[i].cancel = Some(client.cancel_token());
    st.slots[i].client = Some(client.clone());
    st.slots[i].task = Some(task);
    Ok(client)
}

/// Wait in the server's queue for lock `id`, then wake its waiter.
///
/// A cancel can land between the statement's lock and its unlock, and a
/// session-level advisory lock survives the statement's error: after any
/// failed wait the slot drops every advisory lock it may hold (a waiting
/// connection never legitimately holds one) before it is reused.
async fn run_slot(s: S, i: usize, id: i64) {
    let channel = s.borrow().channel.clone();
    let client = match slot_client(&s, i).await {
        Ok(c) => c,
        Err(e) => {
            s.borrow_mut().slots[i].busy_with = None;
            waiting_lost(&s, e);
            return;
        }
    };
    // The waiter may have ended (granted, cancelled) while the slot connected.
    let wanted = matches!(s.borrow().waiters.get(&id), Some(w) if w.slot == Some(i));
    if !wanted {
        s.borrow_mut().slots[i].busy_with = None;
        assign_slots(&s);
        return;
    }
    let r = client.query(sql::BLOCK, &[&id, &channel]).await;
    if r.is_err() {
        loop {
            match client
                .batch_execute("SELECT pg_advisory_unlock_all()")
                .await
            {
                Ok(()) => break,
                Err(e) if e.code() == Some(&SqlState::QUERY_CANCELED) => continue,
                Err(e) => {
                    // The connection is gone, and its locks with it.
                    s.borrow_mut().slots[i].busy_with = None;
                    let server = s.borrow().cfg.server.clone();
                    waiting_lost(&s, PgError::from_client(&e, &server, "wait"));
                    return;
                }
            }
        }
    }
    {
        let mut st = s.borrow_mut();
        st.slots[i].busy_with = None;
        if let Some(w) = st.waiters.get_mut(&id) {
            if w.slot == Some(i) {
                w.slot = None;
            }
            if r.is_ok() {
                w.woken = true;
                w.wake.notify_one();
            }
        }
    }
    if let Err(e) = &r {
        if e.code() != Some(&SqlState::QUERY_CANCELED) && e.as_db_error().is_none() {
            let server = s.borrow().cfg.server.clone();
            waiting_lost(&s, PgError::from_client(e, &server, "wait"));
            return;
        }
    }
    assign_slots(&s);
}

async fn release(s: &S, key: String, token: i64, epoch: u64) -> bool {
    let (client, q, server) = {
        let st = s.borrow();
        match &st.holding {
            Some(h) if h.epoch == epoch => {
                (h.client.clone(), h.release.clone(), st.cfg.server.clone())
            }
            _ => return false,
        }
    };
    let _ = server;
    let id = key::lock_id(&key);
    let ok = match client.query_one(&q, &[&id, &key, &token]).await {
        Ok(row) => row.get::<_, Option<bool>>(0).unwrap_or(false),
        Err(_) => {
            // The unlock alone; if even that fails, end the connection (the
            // server then frees every lock on it) rather than keep a lock
            // nobody owns.
            match client
                .query_one("SELECT pg_advisory_unlock($1::bigint)", &[&id])
                .await
            {
                Ok(row) => row.get::<_, Option<bool>>(0).unwrap_or(false),
                Err(_) => {
                    holding_lost(s, epoch);
                    return false;
                }
            }
        }
    };
    let st = s.borrow();
    if matches!(&st.holding, Some(h) if h.epoch == epoch) {
        let _ = st
            .stats
            .holds
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }
    ok
}

async fn check(s: &S, key: String, token: i64, epoch: u64) -> Result<bool, PgError> {
    let (client, q, server) = {
        let st = s.borrow();
        match &st.holding {
            Some(h) if h.epoch == epoch => (
                h.client.clone(),
                st.check_sql.clone(),
                st.cfg.server.clone(),
            ),
            _ => return Ok(false),
        }
    };
    let id = key::lock_id(&key);
    let (classid, objid) = sql::lock_parts(id);
    match tokio::time::timeout(
        PING_TIMEOUT,
        client.query_one(&q, &[&classid, &objid, &key, &token]),
    )
    .await
    {
        Ok(Ok(row)) => Ok(row.get::<_, Option<bool>>(0).unwrap_or(false)),
        Ok(Err(e)) => {
            let err = PgError::from_client(&e, &server, "check");
            if err.code == LOST || e.is_closed() {
                Ok(false)
            } else {
                Err(err)
            }
        }
        Err(_) => Ok(false),
    }
}

async fn inspect(s: &S) -> Result<Vec<InspectRow>, PgError> {
    let (client, _, _) = holding(s).await?;
    let (schema, server) = {
        let st = s.borrow();
        (st.cfg.schema.clone(), st.cfg.server.clone())
    };
    let rows = client
        .query(&sql::inspect(&schema), &[])
        .await
        .map_err(|e| PgError::from_client(&e, &server, "inspect"))?;
    Ok(rows
        .iter()
        .map(|r| InspectRow {
            key: r.get(0),
            fencing_token: r.get(2),
            pid: r.get(3),
            hostname: r.get(4),
            boot_id: r.get(5),
            acquired_at: r.get(6),
            max_hold_ms: r.get(7),
            backend_pid: r.get(8),
            granted: r.get(9),
            client_addr: r.get(10),
        })
        .collect())
}
