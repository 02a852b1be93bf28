//! Pages of names: the keyset rule that every list follows (`who`, `groups`, the console's
//! lists). A page holds the first names that sort after a cursor, so a walk from page to page
//! sees each name once however the list changes meanwhile, and no page grows with the list.

use chat_proto::MAX_PAGE;
use std::collections::BTreeSet;

/// How many names a page holds when `max` were asked for: at least one, at most
/// [`MAX_PAGE`].
pub fn page_size(max: u32) -> usize {
    max.clamp(1, MAX_PAGE) as usize
}

/// Splits items read in order, up to `size + 1` of them, into the first `size` and whether
/// there were more.
pub fn split_page<T>(mut items: Vec<T>, size: usize) -> (Vec<T>, bool) {
    let more = items.len() > size;
    items.truncate(size);
    (items, more)
}

/// The first `count` of `names` that sort after `after` (all of them when `None`), in order
/// and each once, copied. It holds no more than `count` names at a time and copies only those it
/// returns, whatever the input's length: for lists read under a lock.
pub fn first_after<'a>(
    names: impl IntoIterator<Item = &'a str>,
    after: Option<&str>,
    count: usize,
) -> Vec<String> {
    let mut first = BTreeSet::new();
    for name in names {
        if after.is_some_and(|after| name <= after) {
            continue;
        }
        if first.len() == count && first.last().is_some_and(|&last| name >= last) {
            continue;
        }
        first.insert(name);
        if first.len() > count {
            first.pop_last();
        }
    }
    first.into_iter().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(names: &[&str], after: Option<&str>, count: usize, expected: &[&str]) {
        assert_eq!(first_after(names.iter().copied(), after, count), expected);
    }

    #[test]
    fn a_page_is_the_first_names_after_the_cursor() {
        let names = ["dan", "bob", "eve", "ann", "cat", "bob"];
        check(&names, None, 2, &["ann", "bob"]);
        check(&names, Some("bob"), 2, &["cat", "dan"]);
        check(&names, Some("b"), 10, &["bob", "cat", "dan", "eve"]);
        check(&names, Some("eve"), 2, &[]);
        check(&names, None, 0, &[]);
    }

    #[test]
    fn walking_the_pages_sees_every_name_once() {
        let names: Vec<String> = (0..1000).rev().map(|idx| format!("u{idx}")).collect();
        let mut seen = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = first_after(names.iter().map(String::as_str), after.as_deref(), 7 + 1);
            let (page, more) = split_page(page, 7);
            after = page.last().cloned();
            seen.extend(page);
            if !more {
                break;
            }
        }
        let mut expected = names.clone();
        expected.sort();
        assert_eq!(seen, expected);
    }

    #[test]
    fn a_page_size_is_within_the_protocol() {
        assert_eq!(page_size(0), 1);
        assert_eq!(page_size(50), 50);
        assert_eq!(page_size(u32::MAX), MAX_PAGE as usize);
        assert_eq!(split_page(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(split_page(vec![1, 2], 2), (vec![1, 2], false));
    }
}
