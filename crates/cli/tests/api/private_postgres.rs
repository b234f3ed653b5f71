//! A PostgreSQL server of one test's own (Debian's binaries, a throwaway cluster on a free
//! port), for tests that stop and start the database: the shared one serves other tests.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::skip_unless_required;

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster; `None` (the test skips) when PostgreSQL is not
    /// installed, or in the conformance runs, whose tests it would only repeat.
    pub fn start() -> Option<PrivatePostgres> {
        if std::env::var_os("CONTEXTIQ_CONFORMANCE_DATABASE_URL").is_some() {
            eprintln!("skipped: runs once, in the embedded run");
            return None;
        }
        if !Path::new(BIN).join("initdb").exists() {
            skip_unless_required(
                "a private PostgreSQL",
                "PostgreSQL 15 is not installed (scripts/services.sh install)",
            );
            return None;
        }
        let dir = tempfile::Builder::new().prefix("pg-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a directory");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let postgres = PrivatePostgres { dir, port };
        if is_root() {
            // initdb and postgres refuse to run as root.
            run(Command::new("chown").arg("-R").arg("postgres:postgres").arg(postgres.dir.path()));
        }
        postgres.as_owner(&[
            &format!("{BIN}/initdb"),
            "-D",
            &postgres.data().to_string_lossy(),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
        ]);
        postgres.start_again();
        Some(postgres)
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server as a crash would: no checkpoint, connections cut.
    pub fn stop_immediately(&self) {
        self.as_owner(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            &self.data().to_string_lossy(),
            "-m",
            "immediate",
            "-w",
            "stop",
        ]);
    }

    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().to_string_lossy()
        );
        let log = self.dir.path().join("postgres.log");
        self.as_owner(&[
            &format!("{BIN}/pg_ctl"),
            "-D",
            &self.data().to_string_lossy(),
            "-o",
            &options,
            "-l",
            &log.to_string_lossy(),
            "-w",
            "start",
        ]);
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn as_owner(&self, args: &[&str]) {
        if is_root() {
            let command = args.iter().map(|arg| format!("'{}'", arg.replace('\'', "'\\''"))).collect::<Vec<_>>();
            run(Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &command.join(" ")]));
        } else {
            run(Command::new(args[0]).args(&args[1..]));
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let pg_ctl = format!("{BIN}/pg_ctl");
        let data = self.data().to_string_lossy().into_owned();
        let args = [pg_ctl.as_str(), "-D", data.as_str(), "-m", "immediate", "stop"];
        if is_root() {
            let _ = Command::new("su").args(["postgres", "-s", "/bin/sh", "-c", &args.join(" ")]).output();
        } else {
            let _ = Command::new(args[0]).args(&args[1..]).output();
        }
    }
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

fn run(command: &mut Command) {
    let output = command.output().expect("the command runs");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
