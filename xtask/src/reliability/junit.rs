//! The few facts the scoreboard needs from nextest's JUnit report: each
//! test case's name, whether it passed, and what it printed.

/// One `<testcase>`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Case {
    /// `module::test`, as nextest names it.
    pub(crate) name: String,
    /// The test binary, as nextest names it: `reposmith-tests::suite`, or
    /// `reposmith-macros` for a crate's unit tests.
    pub(crate) binary: String,
    pub(crate) passed: bool,
    /// Its stdout and stderr, unescaped.
    pub(crate) output: String,
}

/// The test cases in `xml`, a report nextest wrote. Written by hand rather
/// than with an XML crate: the format is nextest's own, flat and fixed, and
/// xtask needs three facts from it.
pub(crate) fn cases(xml: &str) -> Vec<Case> {
    xml.split("<testcase ").skip(1).map(case).collect()
}

fn case(chunk: &str) -> Case {
    let body = chunk.split("</testcase>").next().unwrap_or(chunk);
    let name = attribute(body, "name").unwrap_or_default();
    let binary = attribute(body, "classname").unwrap_or_default();
    let failed =
        body.contains("<failure") || body.contains("<error") || body.contains("<rerunFailure");
    let output = ["system-out", "system-err"]
        .iter()
        .filter_map(|tag| element(body, tag))
        .collect::<Vec<_>>()
        .join("\n");
    Case {
        name: unescape(&name),
        binary: unescape(&binary),
        passed: !failed,
        output: unescape(&output),
    }
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!("{name}=\""))? + name.len() + 2;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_owned())
}

fn element<'a>(body: &'a str, tag: &str) -> Option<&'a str> {
    let open = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let close = body[open..].find(&format!("</{tag}>"))? + open;
    Some(&body[open..close])
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#xA;", "\n")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_carry_name_outcome_and_output() {
        let xml = r#"<testsuites><testsuite name="reposmith-tests::suite">
<testcase name="faults::a" classname="reposmith-tests::suite" time="0.2"><system-out>ok</system-out><system-err>12 ops &amp; 0 lost</system-err></testcase>
<testcase name="faults::b" classname="x" time="1"><failure message="boom" type="test failure">panicked</failure></testcase>
</testsuite></testsuites>"#;
        let cases = cases(xml);
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].name, "faults::a");
        assert_eq!(cases[0].binary, "reposmith-tests::suite");
        assert!(cases[0].passed);
        assert!(cases[0].output.contains("12 ops & 0 lost"));
        assert!(!cases[1].passed);
    }
}
