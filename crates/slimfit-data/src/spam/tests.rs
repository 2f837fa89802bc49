//! Tests of the SpamAssassin reader ([`super`]).

use super::*;

#[test]
fn text_keeps_subject_and_body_only() {
    let raw = "From a@b  Thu Aug 22 2002\r\nReceived: from x\r\n\tby y\r\nSUBJECT: Hello\r\n  \
               world\r\nX-Other: z\r\n\r\nBody  line one\r\n\r\nline\ttwo\r\n";
    assert_eq!(email_text(raw, 100), "Hello world Body line one line two");
    assert_eq!(email_text(raw, 8), "Hello wo");
    assert_eq!(email_text(raw, 0), "");
    // Continuation lines of other headers, a later Subject, no body.
    let raw = "Received: a\n subject: no\nSubject: first\nSubject: second";
    assert_eq!(email_text(raw, 100), "first");
    // No subject; multi-byte characters are counted as characters.
    assert_eq!(email_text("From: x\n\nçà va ?", 4), "çà v");
    assert_eq!(email_text("", 10), "");
}

fn message(group: Group, i: usize) -> Message {
    Message {
        group,
        file: format!("{}/{i:05}.json", group.name()),
        text: format!("text {i}"),
    }
}

#[test]
fn subsample_is_balanced_nested_and_fills_shortfalls() {
    let all: Vec<Message> = (0..30)
        .map(|i| message(Group::EasyHam1, i))
        .chain((30..40).map(|i| message(Group::Spam2, i)))
        .collect();
    let refs: Vec<&Message> = all.iter().collect();
    let small = balanced_subsample(&refs, 8);
    assert_eq!(
        ClassCounts::of(small.iter().copied()),
        ClassCounts { ham: 4, spam: 4 }
    );
    let large = balanced_subsample(&refs, 30);
    assert_eq!(
        ClassCounts::of(large.iter().copied()),
        ClassCounts { ham: 20, spam: 10 }
    );
    assert!(small.iter().all(|m| large.contains(m)));
    assert_eq!(balanced_subsample(&refs, 30), large);
    assert_eq!(balanced_subsample(&refs, 100).len(), 40);
    assert!(balanced_subsample(&refs, 0).is_empty());
}

#[test]
fn file_list_entries_are_validated() {
    let (group, file, md5) =
        parse_entry("spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt").unwrap();
    assert_eq!(group, Group::Spam2);
    assert_eq!(file, "spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.json");
    assert_eq!(md5, "317e78fa8ee2f54cd4890fdc09ba8176");
    for bad in [
        "00001.317e78fa8ee2f54cd4890fdc09ba8176.txt",
        "spam-3/00001.317e78fa8ee2f54cd4890fdc09ba8176.txt",
        "spam-2/00001.317e78fa8ee2f54cd4890fdc09ba8176.json",
        "spam-2/../x.317e78fa8ee2f54cd4890fdc09ba8176.txt",
        "spam-2/00001.txt",
    ] {
        assert!(parse_entry(bad).is_err(), "{bad}");
    }
}

#[test]
fn only_records_and_notices_are_extracted() {
    assert_eq!(kept_member("package/LICENSE"), Some("LICENSE"));
    assert_eq!(kept_member("package/data/file_list.json"), Some(FILE_LIST));
    assert_eq!(
        kept_member("package/data/hard-ham-1/00001.abc.json"),
        Some("data/hard-ham-1/00001.abc.json")
    );
    for skipped in [
        "package/data/hard-ham-1/00001.abc.txt",
        "package/data/data.js",
        "package/datapackage.json",
        "package/data/other/00001.json",
        "package/data/spam-1/../../../etc.json",
        "package/data/spam-1/x/y.json",
        "other/LICENSE",
    ] {
        assert_eq!(kept_member(skipped), None, "{skipped}");
    }
}
