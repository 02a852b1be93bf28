//! The `lists` workload: the largest reply frames. `--groups` groups are created (joins by a
//! few of the users, `--group-name-len` characters a name) while `--clients` users are online
//! and living as real clients; then one more connection of the first user reads `groups` and
//! `who` whole, page after page, and the largest reply frame of each is reported, with whether
//! every one of this run's names came back.
//!
//! A reply's size is that of its frame before encryption (postcard), as the server's frame
//! limit counts it.

use crate::args::{count, ListsArgs};
use crate::farm::Conn;
use crate::messages::discover;
use crate::population::Population;
use crate::report::{Line, Verdict};
use anyhow::{bail, Context as _};
use chat_proto::{Request, Response, ServerFrame, MAX_FRAME_LEN, MAX_PAGE};

/// Users whose connections create the groups.
const CREATORS: usize = 20;

pub async fn run(args: ListsArgs, deadline: tokio::time::Instant) -> anyhow::Result<Verdict> {
    let farm = discover(&args.farm).await?;
    let (population, first) =
        Population::start_reported(&farm, args.clients, &args.farm, &args.users, deadline).await?;
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
    let mut expected_groups = groups;
    expected_groups.sort();
    let mut expected_who = population.users.clone();
    expected_who.sort();
    let mut largest = 0;
    let mut failed = 0;
    for (list, expected) in [(List::Groups, expected_groups), (List::Who, expected_who)] {
        let paged = match page_through(&mut asker, list).await {
            Ok(paged) => paged,
            Err(err) => {
                eprintln!("error: {}: {err:#}", list.name());
                // The asker's connection may be gone: open another for the next list.
                asker = farm
                    .log_in(&population.users[0], &args.farm.password)
                    .await?;
                Paged::default()
            }
        };
        let missing = expected
            .iter()
            .filter(|name| paged.names.binary_search(name).is_err())
            .count();
        let ok = paged.pages > 0 && missing == 0;
        largest = largest.max(paged.largest_bytes);
        failed += u64::from(!ok);
        Line::new("reply")
            .field("list", list.name())
            .field("ok", u64::from(ok))
            .field("failed", u64::from(!ok))
            .field("pages", paged.pages)
            .field("items", paged.names.len())
            .field("missing", missing)
            .field("bytes", paged.largest_bytes)
            .field("limit_bytes", MAX_FRAME_LEN)
            .print();
        if !ok {
            verdict.problem(format!(
                "the {} list came back incomplete ({missing} of this run's names missing)",
                list.name()
            ));
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

/// A paged list the workload asks for.
#[derive(Clone, Copy)]
enum List {
    Groups,
    Who,
}

impl List {
    fn name(self) -> &'static str {
        match self {
            List::Groups => "groups",
            List::Who => "who",
        }
    }

    fn request(self, after: Option<String>) -> Request {
        match self {
            List::Groups => Request::Groups {
                after,
                max: MAX_PAGE,
            },
            List::Who => Request::Who {
                after,
                max: MAX_PAGE,
            },
        }
    }
}

/// A whole list, read page after page.
#[derive(Default)]
struct Paged {
    /// Sorted, as the server pages them.
    names: Vec<String>,
    pages: usize,
    /// The largest page's reply frame, before encryption.
    largest_bytes: usize,
}

/// Reads all of `list` on `conn`, page after page, measuring each reply frame.
async fn page_through(conn: &mut Conn, list: List) -> anyhow::Result<Paged> {
    let mut paged = Paged::default();
    loop {
        let after = paged.names.last().cloned();
        let response = match conn.request(list.request(after)).await? {
            Ok(response) => response,
            Err(refusal) => bail!("{} refused: {refusal}", list.name()),
        };
        paged.pages += 1;
        paged.largest_bytes = paged.largest_bytes.max(frame_len(&response)?);
        let (names, more) = match response {
            Response::Groups { groups, more } => {
                (groups.into_iter().map(|entry| entry.name).collect(), more)
            }
            Response::Users { users, more } => (users, more),
            other => bail!("unexpected answer to {}: {other:?}", list.name()),
        };
        let done = !more || names.is_empty();
        paged.names.extend::<Vec<String>>(names);
        if done {
            return Ok(paged);
        }
    }
}

/// The size of `response` as a reply frame, before encryption.
fn frame_len(response: &Response) -> anyhow::Result<usize> {
    let frame = ServerFrame::Reply {
        id: 1,
        result: Ok(response.clone()),
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
