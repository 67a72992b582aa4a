//! A private PostgreSQL 18 cluster (the binaries `scripts/services.sh` installs, pgvector
//! included) on a free loopback port, which a test may restart and stop, or replicate. It runs
//! as the `postgres` OS user when the tests run as root (PostgreSQL refuses to run as root), and
//! is stopped, by the postmaster's own pid file, and deleted when dropped.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The OS user the cluster runs as when the tests run as root (as in `scripts/services.sh`).
const OS_USER: &str = "postgres";
/// The database the instances use.
pub const DATABASE: &str = "markets";

/// A running cluster of one's own.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    port: u16,
    /// `runuser -u postgres --` when running as root, else nothing.
    run_as: Vec<String>,
}

impl PrivatePostgres {
    /// Creates a cluster in `folder` (which the `postgres` user must be able to traverse),
    /// starts it, and creates [`DATABASE`] with the `vector` extension.
    pub fn start(folder: &Path) -> Self {
        let cluster = Self::in_folder(folder);
        cluster.init(folder);
        cluster.pg_ctl(&["start", "-l", &cluster.log()]);
        cluster.psql("postgres", &format!("CREATE DATABASE {DATABASE}"));
        cluster.query("CREATE EXTENSION vector");
        cluster
    }

    /// A streaming replica of `primary` in `folder` (`pg_basebackup -R`, so it follows the
    /// primary from the backup on), started and accepting read-only sessions.
    pub fn replica_of(primary: &Self, folder: &Path) -> Self {
        let replica = Self::in_folder(folder);
        replica.own(folder);
        run(replica
            .as_owner(&replica.bin.join("pg_basebackup"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &primary.port.to_string(),
                "-U",
                "postgres",
            ])
            .args([
                "-D",
                &replica.data.display().to_string(),
                "-R",
                "-X",
                "stream",
            ])
            .args(["--checkpoint=fast", "--no-sync"]));
        // The primary's settings came with the backup; the last `port` line wins.
        replica.append_conf(&format!("\nport = {}\n", replica.port));
        replica.pg_ctl(&["start", "-l", &replica.log()]);
        replica
    }

    /// The cluster `folder` will hold, not yet created.
    fn in_folder(folder: &Path) -> Self {
        let run_as = if is_root() {
            ["runuser", "-u", OS_USER, "--"].map(str::to_owned).to_vec()
        } else {
            Vec::new()
        };
        Self {
            bin: binaries(),
            data: folder.join("data"),
            port: free_port(),
            run_as,
        }
    }

    /// Creates `folder`, owned by the cluster's OS user.
    fn own(&self, folder: &Path) {
        std::fs::create_dir_all(folder)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", folder.display()));
        if is_root() {
            run(Command::new("chown").args([OS_USER, &folder.display().to_string()]));
        }
    }

    fn append_conf(&self, conf: &str) {
        let path = self.data.join("postgresql.conf");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut file| std::io::Write::write_all(&mut file, conf.as_bytes()))
            .unwrap_or_else(|error| panic!("cannot append to {}: {error}", path.display()));
    }

    /// `initdb` as the cluster's OS user, then the settings of a throw-away test cluster.
    fn init(&self, folder: &Path) {
        self.own(folder);
        let data = self.data.display().to_string();
        run(self
            .as_owner(&self.bin.join("initdb"))
            .args([
                "-D",
                &data,
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
            ])
            .args([
                "--locale=C",
                "--locale-provider=builtin",
                "--builtin-locale=C.UTF-8",
            ])
            .args(["--no-sync", "--no-instructions"]));
        // Appended, not passed with `pg_ctl -o`, so that `restart` keeps them.
        let conf = format!(
            "\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             max_connections = 100\nfsync = off\nsynchronous_commit = off\n",
            self.port
        );
        self.append_conf(&conf);
    }

    /// `postgres://` URL of [`DATABASE`].
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// Outside the data folder, so that it stays when the cluster is deleted.
    fn log(&self) -> String {
        self.data.with_file_name("server.log").display().to_string()
    }

    /// `pg_ctl restart -m fast`: sessions are terminated, the server is back when it returns.
    pub fn restart_fast(&self) {
        self.pg_ctl(&["restart", "-m", "fast", "-l", &self.log()]);
    }

    /// `pg_ctl stop -m fast`: returns once the server is down.
    pub fn stop_fast(&self) {
        self.pg_ctl(&["stop", "-m", "fast"]);
    }

    /// `pg_ctl start`: returns once the server accepts connections.
    pub fn start_again(&self) {
        self.pg_ctl(&["start", "-l", &self.log()]);
    }

    /// Runs `command` with a bounded wait (`-w -t 30`), as the cluster's owner.
    fn pg_ctl(&self, command: &[&str]) {
        let data = self.data.display().to_string();
        run(self
            .as_owner(&self.bin.join("pg_ctl"))
            .args(["-D", &data, "-w", "-t", "30"])
            .args(command));
    }

    /// The rows `sql` returns in [`DATABASE`], one line each, columns separated by `|`.
    pub fn query(&self, sql: &str) -> String {
        self.psql(DATABASE, sql)
    }

    fn psql(&self, database: &str, sql: &str) -> String {
        let output = run(Command::new(self.bin.join("psql"))
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql]));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }

    /// `program` run as the cluster's OS user, from a folder that user can enter.
    fn as_owner(&self, program: &Path) -> Command {
        let mut command = match self.run_as.split_first() {
            Some((runner, args)) => {
                let mut command = Command::new(runner);
                command.args(args).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.current_dir("/").stdin(Stdio::null());
        command
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.data.display().to_string();
        let stopped = self
            .as_owner(&self.bin.join("pg_ctl"))
            .args(["-D", &data, "-m", "immediate", "-w", "-t", "10", "stop"])
            .output()
            .is_ok_and(|output: Output| output.status.success());
        if !stopped {
            // The postmaster's pid is the first line of its pid file; its children follow it.
            let pid = std::fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
            if let Some(pid) = pid.lines().next().filter(|pid| !pid.is_empty()) {
                let _ = Command::new("kill").args(["-KILL", pid]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .unwrap_or_else(|error| panic!("no free port: {error}"))
}

/// Runs `command` to completion; panics with its output unless it succeeds.
pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}): {}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// The `bin` folder of the PostgreSQL 18 that `scripts/services.sh` installs.
fn binaries() -> PathBuf {
    let services = std::env::var("MARKETS_SERVICES_DIR")
        .unwrap_or_else(|_| "/var/tmp/markets-services".to_owned());
    let mut installs: Vec<PathBuf> = std::fs::read_dir(&services)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("pgserver-"))
        .map(|entry| entry.path().join("pgserver/pginstall/bin"))
        .filter(|bin| bin.join("pg_ctl").is_file())
        .collect();
    installs.sort();
    installs.pop().unwrap_or_else(|| {
        panic!("no PostgreSQL binaries under {services}/pgserver-*: run scripts/services.sh up")
    })
}

fn is_root() -> bool {
    let output = run(Command::new("id").arg("-u"));
    String::from_utf8_lossy(&output.stdout).trim() == "0"
}
