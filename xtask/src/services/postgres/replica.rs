//! `services up --replica`: a streaming hot standby of our own primary, for
//! the read-replica tests (lag, recovery conflicts, a replica that stops).
//!
//! Made once by `pg_basebackup -R -X stream -C -S replica1` (the wheel's,
//! as the same OS user) into `<state>/postgres-replica/data`, then started
//! from that directory on each `up`. Its settings live in the data
//! directory (`reposmith-replica.conf`, included from `postgresql.conf`), so
//! a plain `pg_ctl -D <data> start` — what the fault tests run — brings it
//! back exactly as `up` does. `down` stops it and keeps its data and its
//! slot, so the next `up` only replays what it missed.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::{MAX_CONNECTIONS, OsUser, PASSWORD, Paths, live_postmaster, managed_primary};
use super::{record, recorded_cluster, url};
use crate::error::{Context, Error};
use crate::services::process;
use crate::services::state::Record;
use crate::services::{Ctx, Endpoint, Origin, label, text};

/// The physical replication slot on the primary that keeps the WAL the
/// replica has not received yet.
const SLOT: &str = "replica1";
const DEFAULT_PORT: u16 = 55433;
const VAR: &str = "REPOSMITH_TEST_PG_REPLICA_URL";
/// The file of our settings inside the data directory.
const SETTINGS: &str = "reposmith-replica.conf";
/// A base backup of the test database copies some 50 MB; minutes mean stuck.
const BACKUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a started replica gets to report its WAL receiver streaming.
const STREAM_TIMEOUT: Duration = Duration::from_secs(30);

fn paths(ctx: &Ctx) -> Paths {
    Paths::at(ctx, "postgres-replica")
}

/// The replica's settings. `max_standby_streaming_delay` is low so a query
/// in the way of replay is cancelled within 20 ms (the recovery-conflict
/// test needs reads that outlast it, and a scan of a few thousand rows
/// does); no `hot_standby_feedback`, so such conflicts happen at all. `max_connections` must be at least the primary's.
fn settings(port: u16, socket_dir: &Path) -> String {
    let socket_dir = text(socket_dir).replace('\'', "''");
    format!(
        "# written by `cargo xtask services up --replica` before each start\n\
         port = {port}\n\
         listen_addresses = '127.0.0.1'\n\
         unix_socket_directories = '{socket_dir}'\n\
         max_connections = {MAX_CONNECTIONS}\n\
         hot_standby = on\n\
         max_standby_streaming_delay = 20ms\n\
         hot_standby_feedback = off\n\
         fsync = off\n"
    )
}

/// The slot as the primary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Missing,
    /// A WAL receiver streams from it: some replica runs.
    Active,
    /// Nobody streams; `lost` when the primary already removed WAL it held
    /// (past `max_slot_wal_keep_size`), so no replica can resume from it.
    Idle {
        lost: bool,
    },
}

impl Slot {
    /// From `SELECT active, wal_status` (`t|reserved`, or no row).
    fn parse(row: &str) -> Self {
        match row.split_once('|') {
            None => Self::Missing,
            Some(("t", _)) => Self::Active,
            Some((_, status)) => Self::Idle {
                lost: status == "lost",
            },
        }
    }
}

/// What to do with the replica's data before starting it.
#[derive(Debug, PartialEq, Eq)]
enum Plan {
    /// Start from the data directory as it is.
    Resume,
    /// Take a new base backup: `why` for people; drop the old slot first.
    Rebuild { why: &'static str, drop_slot: bool },
}

/// Resume when the data directory is a standby of this primary whose slot
/// still holds its WAL; otherwise start over. The slot without the data (a
/// removed directory) and the data without the slot (a new primary) are
/// both stale halves of an earlier replica.
fn plan(has_data: bool, same_primary: bool, slot: Slot) -> Plan {
    let drop_slot = matches!(slot, Slot::Idle { .. });
    let why = match (has_data, slot) {
        (false, Slot::Missing) => "first start",
        (false, _) => "its data directory is gone; the stale slot is dropped",
        (true, Slot::Missing) => "the primary has no slot for it (a new primary?)",
        (true, Slot::Idle { lost: true }) => "the primary removed WAL it had not received",
        (true, _) if !same_primary => "the primary moved to another port",
        (true, _) => return Plan::Resume,
    };
    Plan::Rebuild { why, drop_slot }
}

/// Brings the replica up beside our primary; `None` (with a line saying
/// why) when the primary is the user's.
pub(in crate::services) fn up(ctx: &Ctx) -> Result<Option<Endpoint>, Error> {
    let primary_port = match managed_primary(ctx) {
        Ok(port) => port,
        Err(why) => {
            println!("{}skipped: the replica {why}", label("replica"));
            return Ok(None);
        }
    };
    let paths = paths(ctx);
    let bin = ctx.venv()?.pg_bin_dir()?;
    let replica = Cluster {
        paths: &paths,
        bin: bin.clone(),
        user: OsUser::new(ctx),
    };
    if let Some((pid, port)) = live_postmaster(&paths) {
        replica.wait_ready(port)?;
        return Ok(Some(endpoint(&replica, pid, port, false)));
    }
    let started = Instant::now();
    let primary_paths = Paths::primary(ctx);
    let primary = Cluster {
        paths: &primary_paths,
        bin,
        user: OsUser::new(ctx),
    };
    let port = start(&primary, &replica, primary_port)?;
    let Some((pid, _)) = live_postmaster(&paths) else {
        return Err(replica.failure("replica exited right after start"));
    };
    record(&replica, pid, port)
        .with("primary_port", primary_port)
        .save(&paths.record)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}streaming from the primary, up in {secs:.1} s",
        label("replica")
    );
    Ok(Some(endpoint(&replica, pid, port, true)))
}

/// Makes or resumes the data directory, starts the replica on its port and
/// waits until it streams; returns the port.
fn start(primary: &Cluster<'_>, replica: &Cluster<'_>, primary_port: u16) -> Result<u16, Error> {
    let paths = replica.paths;
    if !replica.bin.join("pg_basebackup").is_file() {
        return Err(Error::msg(format!(
            "replica: no pg_basebackup in {}",
            replica.bin.display()
        )));
    }
    replica.prepare_dirs()?;
    let recorded = Record::load(&paths.record);
    let recorded_port = recorded.as_ref().and_then(|r| r.number("port"));
    let same_primary = recorded
        .as_ref()
        .and_then(|r| r.number::<u16>("primary_port"))
        == Some(primary_port);
    let has_data = paths.data.join("standby.signal").is_file();
    let slot = settled_slot(primary, primary_port)?;
    if slot == Slot::Active {
        return Err(Error::msg(format!(
            "replica: slot {SLOT} on the primary is in use by a standby xtask did not start; \
             stop it, or drop the slot (SELECT pg_drop_replication_slot('{SLOT}'))"
        )));
    }
    if let Plan::Rebuild { why, drop_slot } = plan(has_data, same_primary, slot) {
        println!("{}base backup from the primary ({why})", label("replica"));
        if drop_slot {
            primary.query(
                primary_port,
                &format!("SELECT pg_drop_replication_slot('{SLOT}')"),
            )?;
        }
        base_backup(replica, primary_port)?;
    }
    let port = process::pick_port(&[recorded_port.unwrap_or(DEFAULT_PORT), DEFAULT_PORT])?;
    let conf = paths.data.join(SETTINGS);
    fs::write(&conf, settings(port, &paths.socket_dir))
        .context(format!("cannot write {}", conf.display()))?;
    replica.pg_ctl_start(&[])?;
    await_streaming(replica, port)?;
    Ok(port)
}

/// The slot's state once a replica stopped a moment ago has let go of it:
/// its WAL sender on the primary notices the closed connection only soon
/// after, and until then the slot still reads active.
fn settled_slot(primary: &Cluster<'_>, primary_port: u16) -> Result<Slot, Error> {
    let sql =
        format!("SELECT active, wal_status FROM pg_replication_slots WHERE slot_name = '{SLOT}'");
    let mut slot = Slot::parse(&primary.query(primary_port, &sql)?);
    let mut failure = None;
    process::wait_until(Duration::from_secs(10), || {
        if slot != Slot::Active {
            return true;
        }
        match primary.query(primary_port, &sql) {
            Ok(row) => slot = Slot::parse(&row),
            Err(err) => failure = Some(err),
        }
        failure.is_some()
    });
    failure.map_or(Ok(slot), Err)
}

/// `pg_basebackup` over TCP (what `pg_hba.conf`'s `host replication` line
/// admits with the password), creating the slot; `-R` writes the
/// connection and slot into `postgresql.auto.conf` and `standby.signal`.
/// `-c fast` asks for an immediate checkpoint: the default spread one took
/// over a minute here.
fn base_backup(replica: &Cluster<'_>, primary_port: u16) -> Result<(), Error> {
    let data = &replica.paths.data;
    if data.exists() {
        fs::remove_dir_all(data).context(format!("cannot remove {}", data.display()))?;
    }
    // The password goes by environment, not argv (which `ps` shows).
    let conninfo =
        format!("host=127.0.0.1 port={primary_port} user=postgres application_name={SLOT}");
    let mut backup = replica.command("pg_basebackup");
    backup.env("PGPASSWORD", PASSWORD);
    backup.arg("-D").arg(data);
    backup.args([
        "-R", "-X", "stream", "-c", "fast", "-C", "-S", SLOT, "-d", &conninfo,
    ]);
    let log = replica.paths.dir.join("pg_basebackup.log");
    let status = crate::cmd::run_logged(&mut backup, &log, BACKUP_TIMEOUT)?;
    if !status.success() {
        return Err(Error::msg(format!(
            "replica: pg_basebackup failed\n{}",
            process::log_tail(&log, 30)
        )));
    }
    let mut conf = OpenOptions::new()
        .append(true)
        .open(data.join("postgresql.conf"))?;
    writeln!(conf, "\ninclude_if_exists = '{SETTINGS}'")?;
    Ok(())
}

/// Waits until the replica is in recovery with its WAL receiver streaming,
/// so a test's first read already follows the primary.
fn await_streaming(replica: &Cluster<'_>, port: u16) -> Result<(), Error> {
    replica.wait_ready(port)?;
    let sql = "SELECT pg_is_in_recovery(), (SELECT status FROM pg_stat_wal_receiver)";
    let mut last = String::new();
    let streaming = process::wait_until(STREAM_TIMEOUT, || {
        last = replica
            .query(port, sql)
            .unwrap_or_else(|err| err.to_string());
        last == "t|streaming"
    });
    if streaming {
        return Ok(());
    }
    Err(replica.failure(&format!(
        "replica not streaming after {} s (in recovery|receiver: {last})",
        STREAM_TIMEOUT.as_secs()
    )))
}

fn endpoint(replica: &Cluster<'_>, pid: u32, port: u16, fresh: bool) -> Endpoint {
    Endpoint {
        name: "replica",
        var: VAR,
        url: url(port),
        origin: Origin::Managed { pid, fresh },
        // Fault tests stop and start it (`pg_ctl -D`), with the primary's
        // REPOSMITH_PG_BIN_DIR and REPOSMITH_PG_OS_USER.
        extra: vec![("REPOSMITH_PG_REPLICA_DATA", text(&replica.paths.data))],
    }
}

/// The port of our running replica, if it runs.
pub(in crate::services) fn port(ctx: &Ctx) -> Option<u16> {
    live_postmaster(&paths(ctx)).map(|(_, port)| port)
}

/// Running or stopped; never the user's.
pub(in crate::services) fn status(ctx: &Ctx) -> Result<Endpoint, String> {
    let paths = paths(ctx);
    let Some((pid, port)) = live_postmaster(&paths) else {
        return Err("stopped".to_owned());
    };
    if !process::tcp_reachable("127.0.0.1", port, Duration::from_secs(3)) {
        return Err(format!(
            "starting or stuck (pid {pid}, port {port} not answering)"
        ));
    }
    let replica = recorded_cluster(ctx, &paths).map_err(|err| err.to_string())?;
    Ok(endpoint(&replica, pid, port, false))
}

/// Stops our replica; its data directory and its slot stay for the next `up`.
pub(in crate::services) fn down(ctx: &Ctx) -> Result<Vec<String>, Error> {
    let paths = paths(ctx);
    let line = match live_postmaster(&paths) {
        Some((pid, _)) => {
            recorded_cluster(ctx, &paths)?.stop(pid)?;
            format!("stopped (pid {pid})")
        }
        None => "not running, nothing to stop".to_owned(),
    };
    Ok(vec![format!("{}{line}", label("replica"))])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_parse_from_psql_rows() {
        assert_eq!(Slot::parse(""), Slot::Missing);
        assert_eq!(Slot::parse("t|reserved"), Slot::Active);
        assert_eq!(Slot::parse("f|reserved"), Slot::Idle { lost: false });
        assert_eq!(Slot::parse("f|lost"), Slot::Idle { lost: true });
    }

    #[test]
    fn only_a_standby_of_this_primary_with_its_slot_resumes() {
        let idle = Slot::Idle { lost: false };
        assert_eq!(plan(true, true, idle), Plan::Resume);
        let rebuild = |has_data, same, slot| match plan(has_data, same, slot) {
            Plan::Rebuild { drop_slot, .. } => Some(drop_slot),
            Plan::Resume => None,
        };
        assert_eq!(rebuild(false, true, Slot::Missing), Some(false));
        assert_eq!(
            rebuild(false, true, idle),
            Some(true),
            "a stale slot is dropped"
        );
        assert_eq!(rebuild(true, true, Slot::Missing), Some(false));
        assert_eq!(rebuild(true, true, Slot::Idle { lost: true }), Some(true));
        assert_eq!(rebuild(true, false, idle), Some(true));
    }

    #[test]
    fn settings_name_the_port_and_quote_the_socket_dir() {
        let text = settings(55433, Path::new("/tmp/it's"));
        assert!(text.contains("port = 55433\n"));
        assert!(text.contains("unix_socket_directories = '/tmp/it''s'\n"));
        assert!(text.contains("max_standby_streaming_delay = 20ms\n"));
        assert!(text.contains(&format!("max_connections = {MAX_CONNECTIONS}\n")));
    }
}
