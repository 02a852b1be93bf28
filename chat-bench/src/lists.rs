//! The `lists` workload: the largest reply frames. `--groups` groups are created (joins by a
//! few of the users, `--group-name-len` characters a name) while `--clients` users are online
//! and living as real clients; then one more connection of the first user asks `groups` and
//! `who`, once each, and the size of each reply frame is reported, or that it never came (a
//! reply past the frame limit ends the connection today).
//!
//! A reply's size is that of its frame before encryption (postcard), as the server's frame
//! limit counts it. A reply that never came is reported with `at_least_bytes`, the size the
//! reply would have with only this run's groups or users in it.

use crate::args::{count, ListsArgs};
use crate::messages::discover;
use crate::population::{names, Population};
use crate::report::{Line, Verdict};
use anyhow::{bail, Context as _};
use chat_proto::{Request, Response, ServerFrame, MAX_FRAME_LEN};

/// Users whose connections create the groups.
const CREATORS: usize = 20;

pub async fn run(args: ListsArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let farm = discover(&args.farm).await?;
    let users = names(&farm, &args.farm, count(args.clients));
    let (population, first) =
        Population::start(&farm, users, &args.farm, &args.users, deadline).await?;
    first
        .fields(Line::new("login"), population.users.len(), first.dropped)
        .print();
    let groups = group_names(
        &args.farm.limits.run_id(),
        count(args.groups),
        count(args.group_name_len),
    )?;
    // The asker, users[0], joins nothing: its `joined` list stays empty.
    let creators = &population.users[1..population.users.len().min(CREATORS + 1)];
    let creating = create(&farm, creators, &groups, &args.farm.password);
    tokio::time::timeout_at(deadline, creating)
        .await
        .context("the groups were not all created in time")??;
    let mut asker = farm
        .log_in(&population.users[0], &args.farm.password)
        .await?;
    let mut verdict = Verdict::default();
    verdict.expect_zero("failed logins", first.failed);
    let mut sorted = groups;
    sorted.sort();
    let expected_groups = Response::Groups {
        all: sorted,
        joined: Vec::new(),
    };
    let mut online = population.users.clone();
    online.sort();
    let expected_who = Response::Users(online);
    let mut largest = 0;
    let mut failed = 0;
    for (list, request, expected) in [
        ("groups", Request::Groups, expected_groups),
        ("who", Request::Who, expected_who),
    ] {
        // After a reply that never came, the asker's connection is gone: open another.
        let answer = match asker.request(request.clone()).await {
            Ok(answer) => Ok(answer),
            Err(err) => {
                asker = farm
                    .log_in(&population.users[0], &args.farm.password)
                    .await?;
                Err(err)
            }
        };
        let bytes = match answer {
            Ok(Ok(response)) => frame_len(response)?,
            Ok(Err(refusal)) => {
                eprintln!("error: {list} refused: {refusal}");
                0
            }
            Err(err) => {
                eprintln!("error: {list}: {err:#}");
                0
            }
        };
        largest = largest.max(bytes);
        let ok = bytes > 0;
        failed += u64::from(!ok);
        Line::new("reply")
            .field("list", list)
            .field("ok", u64::from(ok))
            .field("failed", u64::from(!ok))
            .field("bytes", bytes)
            .field("at_least_bytes", frame_len(expected)?)
            .field("limit_bytes", MAX_FRAME_LEN)
            .print();
        if !ok {
            verdict.problem(format!("the {list} reply never came"));
        }
    }
    population.stop();
    Line::new("lists")
        .field("clients", population.users.len())
        .field("groups", args.groups)
        .field("largest_bytes", largest)
        .field("failed", failed)
        .field("limit_bytes", MAX_FRAME_LEN)
        .print();
    Ok(verdict)
}

/// `n` group names of exactly `len` characters: `l<run>-` and a zero-padded number.
fn group_names(run_id: &str, n: usize, len: usize) -> anyhow::Result<Vec<String>> {
    let prefix = format!("l{run_id}-");
    let width = len.saturating_sub(prefix.len());
    if width < n.max(1).to_string().len() {
        bail!("group names of {len} characters cannot number {n} groups; give a longer --group-name-len");
    }
    Ok((0..n).map(|k| format!("{prefix}{k:0width$}")).collect())
}

/// Each of `creators` logs in on its own connection and joins its share of `groups`, one
/// join at a time.
async fn create(
    farm: &std::sync::Arc<crate::farm::Farm>,
    creators: &[String],
    groups: &[String],
    password: &str,
) -> anyhow::Result<()> {
    if creators.is_empty() {
        bail!("the lists workload needs at least 2 users");
    }
    let joins = creators.iter().enumerate().map(|(idx, user)| async move {
        let mut conn = farm.log_in(user, password).await?;
        for group in groups.iter().skip(idx).step_by(creators.len()) {
            let join = Request::Join {
                group: group.clone(),
            };
            match conn.request(join).await? {
                Ok(Response::Done) => {}
                Ok(other) => bail!("unexpected answer to a join: {other:?}"),
                Err(refusal) => bail!("cannot join #{group}: {refusal}"),
            }
        }
        anyhow::Ok(())
    });
    futures::future::try_join_all(joins).await.map(drop)
}

/// The size of `response` as a reply frame, before encryption.
fn frame_len(response: Response) -> anyhow::Result<usize> {
    let frame = ServerFrame::Reply {
        id: 1,
        result: Ok(response),
    };
    Ok(postcard::to_allocvec(&frame)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_have_the_length_asked() {
        let names = group_names("ab12", 1000, 20).unwrap();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|name| name.len() == 20));
        assert_eq!(names[7], "lab12-00000000000007");
        assert!(chat_proto::validate_group(&names[999]).is_ok());
        assert!(group_names("ab12", 1000, 8).is_err());
    }
}
