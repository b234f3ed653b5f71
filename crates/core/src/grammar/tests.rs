//! The data-driven test of the grammar: every case of `test_data/facts.txt` (its format is
//! described at the top of the file) through [`findings_in`].

use super::findings_in;

/// One case of the data file: a message and the (fact, topic) pairs it yields, in order.
struct Case {
    line_no: usize,
    input: String,
    expected: Vec<(String, String)>,
}

#[test]
fn facts() {
    let cases = parse_cases(include_str!("test_data/facts.txt"));
    assert!(!cases.is_empty(), "no cases in test_data/facts.txt");
    let mut failures = Vec::new();
    for case in &cases {
        let found: Vec<(String, String)> =
            findings_in(&case.input).into_iter().map(|finding| (finding.fact, finding.topic.to_owned())).collect();
        if found != case.expected {
            failures.push(format!(
                "facts.txt:{}: {:?}\n  expected: {:?}\n     found: {:?}",
                case.line_no, case.input, case.expected, found
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

fn parse_cases(text: &str) -> Vec<Case> {
    let mut cases: Vec<Case> = Vec::new();
    for (line_idx, line) in text.lines().enumerate() {
        let line_no = line_idx + 1;
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let case = cases.last_mut().unwrap_or_else(|| panic!("facts.txt:{line_no}: a fact before any input"));
            case.expected.push(parse_fact(line, line_no));
            continue;
        }
        let (input, fact) =
            line.split_once("=>").unwrap_or_else(|| panic!("facts.txt:{line_no}: an input without `=>`"));
        let expected = if fact.trim().is_empty() { Vec::new() } else { vec![parse_fact(fact, line_no)] };
        cases.push(Case { line_no, input: input.trim().replace("\\n", "\n"), expected });
    }
    cases
}

/// `fact | TOPIC`.
fn parse_fact(text: &str, line_no: usize) -> (String, String) {
    let (fact, topic) =
        text.rsplit_once('|').unwrap_or_else(|| panic!("facts.txt:{line_no}: a fact without `| TOPIC`"));
    (fact.trim().to_owned(), topic.trim().to_owned())
}
