//! What `/proc` says of the servers under test: their resident memory (`VmRSS` in
//! `/proc/PID/status`), their `--name`, and which `chat-server` processes listen where.

use anyhow::{bail, Context as _};

/// The `VmRSS` of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    vm_rss_kib(&status).with_context(|| format!("no VmRSS in {path}"))
}

/// The summed `VmRSS` of these processes, in KiB.
pub fn total_rss_kib(pids: &[u32]) -> anyhow::Result<u64> {
    pids.iter().map(|pid| rss_kib(*pid)).sum()
}

fn vm_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The command line of process `pid`, one argument per item.
fn cmdline(pid: &str) -> std::io::Result<Vec<String>> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    Ok(cmdline
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect())
}

/// The `--name` of the chat-server process `pid`.
pub fn server_name(pid: u32) -> anyhow::Result<String> {
    let args =
        cmdline(&pid.to_string()).with_context(|| format!("cannot read /proc/{pid}/cmdline"))?;
    flag_value(&args, "--name")
        .with_context(|| format!("pid {pid} has no --name flag: is it a chat-server?"))
}

/// The `chat-server` processes whose `--listen` address is one of `servers`.
pub fn find_servers(servers: &[String]) -> anyhow::Result<Vec<u32>> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").context("cannot list /proc")? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(args) = cmdline(&pid.to_string()) else {
            continue;
        };
        let is_server = args
            .first()
            .is_some_and(|program| program.ends_with("chat-server"));
        if is_server && flag_value(&args, "--listen").is_some_and(|addr| servers.contains(&addr)) {
            pids.push(pid);
        }
    }
    if pids.is_empty() {
        bail!("no chat-server process listens on one of --servers; give --pids");
    }
    Ok(pids)
}

/// The value of `--flag VALUE` or `--flag=VALUE` in a command line.
fn flag_value(args: &[String], flag: &str) -> Option<String> {
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == flag {
            return iter.next().cloned();
        }
        if let Some(value) = arg
            .strip_prefix(flag)
            .and_then(|rest| rest.strip_prefix('='))
        {
            return Some(value.to_string());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_and_flags_are_read() {
        let status = "Name:\tchat-server\nVmPeak:\t 900 kB\nVmRSS:\t   12345 kB\n";
        assert_eq!(vm_rss_kib(status), Some(12345));
        assert_eq!(vm_rss_kib("Name: x\n"), None);
        let args: Vec<String> = ["chat-server", "--name", "s1", "--listen=127.0.0.1:7"]
            .iter()
            .map(|arg| arg.to_string())
            .collect();
        assert_eq!(flag_value(&args, "--name").as_deref(), Some("s1"));
        assert_eq!(
            flag_value(&args, "--listen").as_deref(),
            Some("127.0.0.1:7")
        );
        assert_eq!(flag_value(&args, "--peer-listen"), None);
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
