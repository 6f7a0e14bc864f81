//! Prometheus metrics of one agent process (docs/metrics.md lists every series).
//!
//! [`Metrics`] is a cheap, cloneable handle over one `prometheus-client` registry. The runtime
//! creates one per process (inside [`AgentServices::new`](crate::services::AgentServices::new))
//! and hands clones **down** at construction time; nobody looks it up, and nothing reads from
//! it except the scrape endpoint ([`Metrics::encode`]):
//!
//! * **command lifecycle and erase progress** come from the [`EventBus`]: a collector task
//!   ([`Metrics::spawn_collector`]) subscribes to it like any other listener and turns
//!   `command.finished` (with the dispatcher's `duration_secs`) and `command.progress` records
//!   that name a `device` into series. Producers do not know about metrics.
//! * what the bus does not carry is recorded by its producer through the handle it was given:
//!   the image pipeline (bytes written, throughput, retries, resumes, checksum failures;
//!   `AgentServices::metrics`), the Ironic heartbeater (attempts, failures, latency, last
//!   success) and the broker transports (link state, reconnects; `TransportContext::metrics`).
//! * process RSS, threads and open file descriptors are read from `/proc/self` at scrape time.
//!
//! Labels are bounded: command names come from the registered extensions (anything else is
//! counted as `other`), devices are the machine's disks (capped at [`MAX_DEVICES`]), transports
//! and results are fixed words. No label carries a token, a password or a URL.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::command::{CommandMode, CommandStatus};
use crate::events::{AgentEvent, EventBus, Progress};

/// `Content-Type` of [`Metrics::encode`]'s output (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// At most this many devices get erase-progress series (a machine has fewer disks).
pub const MAX_DEVICES: usize = 256;

/// The command label used for a name that is not a registered command.
pub const OTHER_COMMAND: &str = "other";

/// Buckets of the command duration histogram, seconds: from an inventory call to a
/// multi-hour erase.
const COMMAND_BUCKETS: &[f64] = &[
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Buckets of the heartbeat latency histogram, seconds.
const HEARTBEAT_BUCKETS: &[f64] =
    &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

fn command_histogram() -> Histogram {
    Histogram::new(COMMAND_BUCKETS.iter().copied())
}

type Labels = Vec<(&'static str, String)>;
type GaugeF64 = Gauge<f64, AtomicU64>;
type GaugeU64 = Gauge<u64, AtomicU64>;

/// How one Ironic heartbeat ended, for [`Metrics::heartbeat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeartbeatResult {
    /// Ironic accepted it (202).
    Accepted,
    /// 409: the node was locked.
    Conflict,
    /// Anything else: a connection error, another status.
    Error,
}

/// Why the scrape text could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The encoder failed (formatting into a `String` does not fail in practice).
    #[error("cannot encode the metrics")]
    Encode(#[source] std::fmt::Error),
}

/// The one metrics handle of an agent process. Cloning shares the series.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

struct Inner {
    registry: Registry,
    commands: Family<Labels, Counter>,
    command_duration: Family<Labels, Histogram, fn() -> Histogram>,
    commands_running: Gauge,
    events_lost: Counter,
    image_bytes_written: Counter,
    image_throughput: GaugeF64,
    image_writes: Family<Labels, Counter>,
    download_retries: Counter,
    download_resumes: Counter,
    checksum_failures: Counter,
    heartbeat_attempts: Counter,
    heartbeat_failures: Family<Labels, Counter>,
    heartbeat_latency: Histogram,
    heartbeat_last_success: Arc<Mutex<Option<Instant>>>,
    erase_devices: Mutex<HashSet<String>>,
    erase_done: Family<Labels, GaugeU64>,
    erase_total: Family<Labels, GaugeU64>,
    link_up: Family<Labels, Gauge>,
    link_reconnects: Family<Labels, Counter>,
}

fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}

/// Register `metric` under `name` and keep a handle to it (metrics share their state on clone).
fn register<M>(r: &mut Registry, name: &str, help: &str, metric: M) -> M
where
    M: prometheus_client::registry::Metric + Clone,
{
    r.register(name, help, metric.clone());
    metric
}

impl Metrics {
    /// A fresh registry with every series registered (counters at zero).
    pub fn new() -> Self {
        let mut r = Registry::default();
        let commands = register(
            &mut r,
            "ipa_commands",
            "Commands that reached a final status, by command name and status",
            Family::<Labels, Counter>::default(),
        );
        let command_duration = register(
            &mut r,
            "ipa_command_duration_seconds",
            "Time from the start of a command to its final status, by command name",
            Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(command_histogram),
        );
        let commands_running = register(
            &mut r,
            "ipa_commands_running",
            "Asynchronous commands started and not finished yet",
            Gauge::default(),
        );
        let events_lost = register(
            &mut r,
            "ipa_metrics_events_lost",
            "Agent events the metrics collector missed because it lagged behind the event bus",
            Counter::default(),
        );
        let image_bytes_written = register(
            &mut r,
            "ipa_image_bytes_written",
            "Image bytes written to install devices (decoded bytes, the withheld first MiB included)",
            Counter::default(),
        );
        let image_throughput = register(
            &mut r,
            "ipa_image_write_throughput_bytes_per_second",
            "Write rate of the current or last image write: bytes written over its elapsed time",
            GaugeF64::default(),
        );
        let image_writes = register(
            &mut r,
            "ipa_image_writes",
            "Image writes (download, decode, write, verify) that ended, by result",
            Family::<Labels, Counter>::default(),
        );
        let download_retries = register(
            &mut r,
            "ipa_image_download_retries",
            "Image download requests repeated after a connection error or a 5xx answer (same URL or the next one)",
            Counter::default(),
        );
        let download_resumes = register(
            &mut r,
            "ipa_image_download_resumes",
            "Image streams cut mid-way and resumed with a Range request",
            Counter::default(),
        );
        let checksum_failures = register(
            &mut r,
            "ipa_image_checksum_failures",
            "Images whose downloaded bytes did not match the expected checksum",
            Counter::default(),
        );
        let heartbeat_attempts = register(
            &mut r,
            "ipa_heartbeat_attempts",
            "Heartbeats sent to Ironic",
            Counter::default(),
        );
        let heartbeat_failures = register(
            &mut r,
            "ipa_heartbeat_failures",
            "Heartbeats Ironic did not accept, by reason (conflict: node locked, 409; error: anything else)",
            Family::<Labels, Counter>::default(),
        );
        let heartbeat_latency = register(
            &mut r,
            "ipa_heartbeat_latency_seconds",
            "Duration of one heartbeat request, whatever its outcome",
            Histogram::new(HEARTBEAT_BUCKETS.iter().copied()),
        );
        let heartbeat_last_success = Arc::new(Mutex::new(None));
        r.register(
            "ipa_heartbeat_seconds_since_last_success",
            "Seconds since Ironic last accepted a heartbeat (absent before the first success)",
            SinceLastSuccess(heartbeat_last_success.clone()),
        );
        let erase_done = register(
            &mut r,
            "ipa_erase_bytes_done",
            "Bytes erased so far on a device in its current erase pass",
            Family::<Labels, GaugeU64>::default(),
        );
        let erase_total = register(
            &mut r,
            "ipa_erase_bytes_total",
            "Bytes to erase on a device in one erase pass",
            Family::<Labels, GaugeU64>::default(),
        );
        let link_up = register(
            &mut r,
            "ipa_link_up",
            "1 while a broker transport's link is up, 0 while it is connecting, down or refused",
            Family::<Labels, Gauge>::default(),
        );
        let link_reconnects = register(
            &mut r,
            "ipa_link_reconnects",
            "Times a broker transport's link came up again after its first connection",
            Family::<Labels, Counter>::default(),
        );
        r.register(
            "ipa_process_resident_memory_bytes",
            "Resident set size of the agent process (VmRSS of /proc/self/status)",
            ProcStatus("VmRSS:"),
        );
        r.register(
            "ipa_process_threads",
            "Threads of the agent process (Threads of /proc/self/status)",
            ProcStatus("Threads:"),
        );
        r.register(
            "ipa_process_open_fds",
            "Open file descriptors of the agent process (entries of /proc/self/fd)",
            OpenFds,
        );
        // Series that should read 0 rather than be absent before anything happened.
        for result in ["success", "failure"] {
            drop(image_writes.get_or_create(&label("result", result)));
        }
        for reason in ["conflict", "error"] {
            drop(heartbeat_failures.get_or_create(&label("reason", reason)));
        }
        Self {
            inner: Arc::new(Inner {
                registry: r,
                commands,
                command_duration,
                commands_running,
                events_lost,
                image_bytes_written,
                image_throughput,
                image_writes,
                download_retries,
                download_resumes,
                checksum_failures,
                heartbeat_attempts,
                heartbeat_failures,
                heartbeat_latency,
                heartbeat_last_success,
                erase_devices: Mutex::default(),
                erase_done,
                erase_total,
                link_up,
                link_reconnects,
            }),
        }
    }

    /// The scrape text (Prometheus text format 0.0.4, [`CONTENT_TYPE`]).
    pub fn encode(&self) -> Result<String, MetricsError> {
        let mut out = String::new();
        prometheus_text::encode(&mut out, &self.inner.registry).map_err(MetricsError::Encode)?;
        Ok(out)
    }

    // ---- commands (fed by the collector) ------------------------------------------------

    /// A command reached `status` after `duration_secs` (if known). `command` must already be
    /// bounded (the collector maps unknown names to [`OTHER_COMMAND`]).
    pub fn command_finished(
        &self,
        command: &str,
        status: CommandStatus,
        duration_secs: Option<f64>,
    ) {
        let labels = vec![("command", command.to_string()), ("status", status_word(status).into())];
        self.inner.commands.get_or_create(&labels).inc();
        if let Some(d) = duration_secs.filter(|d| d.is_finite() && *d >= 0.0) {
            self.inner.command_duration.get_or_create(&label("command", command)).observe(d);
        }
    }

    /// An erase on `device` reached `done` of `total` bytes (current pass).
    pub fn erase_progress(&self, device: &str, done: u64, total: Option<u64>) {
        {
            let mut seen = self.inner.erase_devices.lock().unwrap_or_else(|p| p.into_inner());
            if !seen.contains(device) {
                if seen.len() >= MAX_DEVICES {
                    return;
                }
                seen.insert(device.to_string());
            }
        }
        let key = label("device", device);
        self.inner.erase_done.get_or_create(&key).set(done);
        if let Some(t) = total {
            self.inner.erase_total.get_or_create(&key).set(t);
        }
    }

    // ---- image pipeline -----------------------------------------------------------------

    /// `n` more image bytes were written.
    pub fn image_bytes_written(&self, n: u64) {
        if n > 0 {
            self.inner.image_bytes_written.inc_by(n);
        }
    }

    /// The current image write runs at `bytes_per_second`.
    pub fn image_write_throughput(&self, bytes_per_second: f64) {
        if bytes_per_second.is_finite() && bytes_per_second >= 0.0 {
            self.inner.image_throughput.set(bytes_per_second);
        }
    }

    /// An image write ended (`ok`: written and verified).
    pub fn image_write_finished(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.inner.image_writes.get_or_create(&label("result", result)).inc();
    }

    /// `n` more download requests were repeated.
    pub fn download_retried(&self, n: u64) {
        if n > 0 {
            self.inner.download_retries.inc_by(n);
        }
    }

    /// `n` more cut streams were resumed.
    pub fn download_resumed(&self, n: u64) {
        if n > 0 {
            self.inner.download_resumes.inc_by(n);
        }
    }

    /// An image failed its checksum.
    pub fn checksum_failed(&self) {
        self.inner.checksum_failures.inc();
    }

    // ---- heartbeats ---------------------------------------------------------------------

    /// One heartbeat to Ironic ended with `result` after `latency`.
    pub fn heartbeat(&self, result: HeartbeatResult, latency: Duration) {
        let i = &self.inner;
        i.heartbeat_attempts.inc();
        i.heartbeat_latency.observe(latency.as_secs_f64());
        match result {
            HeartbeatResult::Accepted => {
                *i.heartbeat_last_success.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(Instant::now());
            }
            HeartbeatResult::Conflict => {
                i.heartbeat_failures.get_or_create(&label("reason", "conflict")).inc();
            }
            HeartbeatResult::Error => {
                i.heartbeat_failures.get_or_create(&label("reason", "error")).inc();
            }
        }
    }

    // ---- broker links -------------------------------------------------------------------

    /// `transport`'s link is now up (`true`) or not (`false`).
    pub fn link_state(&self, transport: &'static str, up: bool) {
        self.inner.link_up.get_or_create(&label("transport", transport)).set(i64::from(up));
    }

    /// `transport`'s link came up again after an earlier connection.
    pub fn link_reconnected(&self, transport: &'static str) {
        self.inner.link_reconnects.get_or_create(&label("transport", transport)).inc();
    }

    // ---- the event-bus collector --------------------------------------------------------

    /// Subscribe to `bus` and record command completions and per-device erase progress until
    /// the bus closes. `commands` are the registered `<ext>.<cmd>` names; any other name is
    /// counted as [`OTHER_COMMAND`]. Must be called inside a tokio runtime.
    pub fn spawn_collector(
        &self,
        bus: &EventBus,
        commands: impl IntoIterator<Item = String>,
    ) -> JoinHandle<()> {
        let collector = Collector { metrics: self.clone(), known: commands.into_iter().collect() };
        let mut rx = bus.subscribe();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(ev) => collector.record(&ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(lost = n, "metrics collector lagged behind the event bus");
                        collector.metrics.inner.events_lost.inc_by(n);
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        })
    }
}

/// Turns bus events into series.
struct Collector {
    metrics: Metrics,
    known: HashSet<String>,
}

impl Collector {
    fn command<'a>(&'a self, name: &'a str) -> &'a str {
        if self.known.contains(name) { name } else { OTHER_COMMAND }
    }

    fn record(&self, ev: &AgentEvent) {
        let m = &self.metrics;
        match ev {
            AgentEvent::CommandStarted { mode: CommandMode::Async, .. } => {
                m.inner.commands_running.inc();
            }
            AgentEvent::CommandFinished { name, mode, status, duration_secs, .. } => {
                if *mode == CommandMode::Async {
                    m.inner.commands_running.dec();
                }
                m.command_finished(self.command(name), *status, *duration_secs);
            }
            AgentEvent::CommandProgress { progress, .. } => erase_progress(m, progress),
            _ => {}
        }
    }
}

fn erase_progress(m: &Metrics, p: &Progress) {
    if p.phase != "erase" {
        return;
    }
    if let Some(device) = p.device.as_deref().filter(|d| !d.is_empty()) {
        m.erase_progress(device, p.done, p.total);
    }
}

fn status_word(s: CommandStatus) -> &'static str {
    match s {
        CommandStatus::Running => "RUNNING",
        CommandStatus::Succeeded => "SUCCEEDED",
        CommandStatus::Failed => "FAILED",
        CommandStatus::CleanVersionMismatch => "CLEAN_VERSION_MISMATCH",
    }
}

/// `ipa_heartbeat_seconds_since_last_success`, computed at scrape time.
#[derive(Debug)]
struct SinceLastSuccess(Arc<Mutex<Option<Instant>>>);

impl SinceLastSuccess {
    fn get(&self) -> Option<f64> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).map(|t| t.elapsed().as_secs_f64())
    }
}

impl EncodeMetric for SinceLastSuccess {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.get() {
            Some(secs) => encoder.encode_gauge(&secs),
            None => Ok(()),
        }
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
    fn is_empty(&self) -> bool {
        self.get().is_none()
    }
}

/// A number from `/proc/self/status` (`VmRSS:` in kB is reported in bytes).
#[derive(Debug)]
struct ProcStatus(&'static str);

impl ProcStatus {
    fn read(&self) -> Option<u64> {
        let text = std::fs::read_to_string("/proc/self/status").ok()?;
        parse_status_field(&text, self.0)
    }
}

/// The value of `field` (`"VmRSS:"`, `"Threads:"`) in a `/proc/<pid>/status` text; `kB`
/// values are converted to bytes.
pub fn parse_status_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let mut words = line[field.len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some(unit) if unit.eq_ignore_ascii_case("kb") => n.checked_mul(1024),
        _ => Some(n),
    }
}

impl EncodeMetric for ProcStatus {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.read() {
            Some(v) => encoder.encode_gauge(&v),
            None => Ok(()),
        }
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
    fn is_empty(&self) -> bool {
        self.read().is_none()
    }
}

/// `ipa_process_open_fds`: entries of `/proc/self/fd` at scrape time.
#[derive(Debug)]
struct OpenFds;

impl OpenFds {
    fn read(&self) -> Option<u64> {
        std::fs::read_dir("/proc/self/fd").ok().map(|d| d.count() as u64)
    }
}

impl EncodeMetric for OpenFds {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        match self.read() {
            Some(v) => encoder.encode_gauge(&v),
            None => Ok(()),
        }
    }
    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
    fn is_empty(&self) -> bool {
        self.read().is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the sample `series` (name with labels, as written) in `text`.
    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
    }

    #[test]
    fn a_fresh_registry_shows_zeroed_counters_and_the_process_series() {
        let text = Metrics::new().encode().unwrap();
        assert_eq!(sample(&text, "ipa_image_bytes_written_total"), Some(0.0), "{text}");
        assert_eq!(sample(&text, "ipa_image_writes_total{result=\"failure\"}"), Some(0.0));
        assert_eq!(sample(&text, "ipa_heartbeat_failures_total{reason=\"conflict\"}"), Some(0.0));
        assert_eq!(sample(&text, "ipa_heartbeat_attempts_total"), Some(0.0));
        assert!(sample(&text, "ipa_process_resident_memory_bytes").unwrap() > 1e6, "{text}");
        assert!(sample(&text, "ipa_process_threads").unwrap() >= 1.0);
        assert!(sample(&text, "ipa_process_open_fds").unwrap() >= 1.0);
        assert!(text.contains("# TYPE ipa_heartbeat_latency_seconds histogram"), "{text}");
        // Nothing is known yet about the last successful heartbeat: no sample, no guess.
        assert!(!text.contains("ipa_heartbeat_seconds_since_last_success"), "{text}");
    }

    #[test]
    fn heartbeats_count_attempts_failures_latency_and_the_last_success() {
        let m = Metrics::new();
        m.heartbeat(HeartbeatResult::Error, Duration::from_millis(30));
        m.heartbeat(HeartbeatResult::Conflict, Duration::from_millis(20));
        m.heartbeat(HeartbeatResult::Accepted, Duration::from_millis(10));
        let text = m.encode().unwrap();
        assert_eq!(sample(&text, "ipa_heartbeat_attempts_total"), Some(3.0), "{text}");
        assert_eq!(sample(&text, "ipa_heartbeat_failures_total{reason=\"error\"}"), Some(1.0));
        assert_eq!(sample(&text, "ipa_heartbeat_failures_total{reason=\"conflict\"}"), Some(1.0));
        assert_eq!(sample(&text, "ipa_heartbeat_latency_seconds_count"), Some(3.0));
        let sum = sample(&text, "ipa_heartbeat_latency_seconds_sum").unwrap();
        assert!((sum - 0.06).abs() < 1e-9, "{sum}");
        assert_eq!(sample(&text, "ipa_heartbeat_latency_seconds_bucket{le=\"0.025\"}"), Some(2.0));
        let since = sample(&text, "ipa_heartbeat_seconds_since_last_success").unwrap();
        assert!((0.0..5.0).contains(&since), "{since}");
    }

    #[tokio::test]
    async fn the_collector_turns_bus_events_into_command_and_erase_series() {
        let m = Metrics::new();
        let bus = EventBus::default();
        let task = m.spawn_collector(&bus, ["standby.prepare_image".to_string()]);
        tokio::task::yield_now().await;
        bus.publish(AgentEvent::CommandStarted {
            id: "1".into(),
            name: "standby.prepare_image".into(),
            mode: CommandMode::Async,
        });
        let progress = |device: Option<&str>, phase: &str, done| AgentEvent::CommandProgress {
            id: "1".into(),
            name: "clean.execute_clean_step".into(),
            progress: Progress {
                phase: phase.into(),
                done,
                total: Some(100),
                device: device.map(Into::into),
                ..Default::default()
            },
        };
        bus.publish(progress(Some("/dev/sda"), "erase", 40));
        bus.publish(progress(None, "erase", 99)); // no device: not attributable
        bus.publish(progress(Some("/dev/sdb"), "download", 7)); // not an erase
        bus.publish(AgentEvent::CommandFinished {
            id: "1".into(),
            name: "standby.prepare_image".into(),
            mode: CommandMode::Async,
            status: CommandStatus::Failed,
            duration_secs: Some(2.0),
        });
        bus.publish(AgentEvent::CommandFinished {
            id: "2".into(),
            name: "made.up".into(),
            mode: CommandMode::Sync,
            status: CommandStatus::Succeeded,
            duration_secs: Some(0.001),
        });
        // The collector runs on its own task: wait (bounded) for it to catch up.
        let mut text = String::new();
        for _ in 0..200 {
            text = m.encode().unwrap();
            if text.contains("command=\"other\"") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let failed = "ipa_commands_total{command=\"standby.prepare_image\",status=\"FAILED\"}";
        assert_eq!(sample(&text, failed), Some(1.0), "{text}");
        assert_eq!(
            sample(&text, "ipa_commands_total{command=\"other\",status=\"SUCCEEDED\"}"),
            Some(1.0),
            "unknown names are folded into one label value"
        );
        assert!(!text.contains("made.up"), "{text}");
        let count = "ipa_command_duration_seconds_count{command=\"standby.prepare_image\"}";
        assert_eq!(sample(&text, count), Some(1.0));
        let sum = "ipa_command_duration_seconds_sum{command=\"standby.prepare_image\"}";
        assert_eq!(sample(&text, sum), Some(2.0));
        assert_eq!(sample(&text, "ipa_commands_running"), Some(0.0));
        assert_eq!(sample(&text, "ipa_erase_bytes_done{device=\"/dev/sda\"}"), Some(40.0));
        assert_eq!(sample(&text, "ipa_erase_bytes_total{device=\"/dev/sda\"}"), Some(100.0));
        assert!(!text.contains("/dev/sdb"), "{text}");
        task.abort();
    }

    #[test]
    fn erase_devices_are_capped() {
        let m = Metrics::new();
        for i in 0..MAX_DEVICES + 10 {
            m.erase_progress(&format!("/dev/d{i}"), 1, Some(2));
        }
        m.erase_progress("/dev/d0", 2, Some(2));
        let text = m.encode().unwrap();
        assert_eq!(text.matches("ipa_erase_bytes_done{").count(), MAX_DEVICES);
        assert_eq!(sample(&text, "ipa_erase_bytes_done{device=\"/dev/d0\"}"), Some(2.0));
    }

    #[test]
    fn image_and_link_series_record_what_producers_report() {
        let m = Metrics::new();
        m.image_bytes_written(3 << 20);
        m.image_bytes_written(0);
        m.image_write_throughput(1.5e8);
        m.image_write_throughput(f64::NAN); // ignored
        m.image_write_finished(true);
        m.download_retried(2);
        m.download_resumed(1);
        m.checksum_failed();
        m.link_state("amqp", true);
        m.link_state("zmq", false);
        m.link_reconnected("amqp");
        let text = m.encode().unwrap();
        assert_eq!(sample(&text, "ipa_image_bytes_written_total"), Some(3145728.0), "{text}");
        assert_eq!(sample(&text, "ipa_image_write_throughput_bytes_per_second"), Some(1.5e8));
        assert_eq!(sample(&text, "ipa_image_writes_total{result=\"success\"}"), Some(1.0));
        assert_eq!(sample(&text, "ipa_image_download_retries_total"), Some(2.0));
        assert_eq!(sample(&text, "ipa_image_download_resumes_total"), Some(1.0));
        assert_eq!(sample(&text, "ipa_image_checksum_failures_total"), Some(1.0));
        assert_eq!(sample(&text, "ipa_link_up{transport=\"amqp\"}"), Some(1.0));
        assert_eq!(sample(&text, "ipa_link_up{transport=\"zmq\"}"), Some(0.0));
        assert_eq!(sample(&text, "ipa_link_reconnects_total{transport=\"amqp\"}"), Some(1.0));
    }

    #[test]
    fn proc_status_fields_parse_and_bad_input_is_none() {
        let status = "Name:\tipa-agent\nVmRSS:\t   20480 kB\nThreads:\t7\n";
        assert_eq!(parse_status_field(status, "VmRSS:"), Some(20480 * 1024));
        assert_eq!(parse_status_field(status, "Threads:"), Some(7));
        assert_eq!(parse_status_field(status, "VmSwap:"), None);
        assert_eq!(parse_status_field("Threads:\tmany\n", "Threads:"), None);
        assert_eq!(parse_status_field("VmRSS:\n", "VmRSS:"), None);
        assert_eq!(parse_status_field("VmRSS: 99999999999999999999 kB", "VmRSS:"), None);
    }
}
