//! The `storm` workload: many new users log in at once, each at its home server.

use crate::args::{count, StormArgs};
use crate::logins::farm_logins;
use crate::messages::discover;
use crate::report::Verdict;

pub async fn run(args: StormArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let farm = discover(&args.farm).await?;
    let run_id = args.farm.limits.run_id();
    let users = farm.names_by_home(&format!("s{run_id}-"), count(args.clients));
    let storm = farm_logins(
        &farm,
        &users,
        &args.farm.password,
        args.farm.limits.concurrency(),
    );
    let Ok(logins) = tokio::time::timeout_at(deadline, storm).await else {
        return Ok(Verdict::timed_out());
    };
    logins.print("storm");
    let mut verdict = Verdict::default();
    verdict.expect_zero("failed logins", logins.failed);
    Ok(verdict)
}
