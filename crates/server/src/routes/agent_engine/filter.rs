//! List filters (AIP-160), the subset Agent Engine's clients send: comparisons of a field path
//! with a literal (`user_id="u1"`, `timestamp>="2026-01-01T00:00:00+00:00"`,
//! `scope.user_id="u9"`, `fact:"coffee"`, `topics.managed_memory_topic="USER_PREFERENCES"`),
//! joined by `AND`, `OR` and `NOT`, grouped by parentheses. A filter is evaluated against
//! a resource as a JSON object with snake_case field names; a comparison with a field the
//! resource lacks is false. Timestamps compare as instants, numbers as numbers.

use chrono::{DateTime, Utc};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Compare { path: Vec<String>, op: Op, literal: Literal },
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// `:`, "has": a list holds the value, or a text contains it.
    Has,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Text(String),
    /// A bare number, and how it was written: `scope.user_id=123` compares with the text.
    Number(f64, String),
    Bool(bool),
    /// A JSON object, as the documented `scope={"user_id":"123"}` gives one.
    Json(Value),
}

/// The longest filter accepted.
pub const MAX_FILTER_CHARS: usize = 2_000;

pub fn parse(text: &str) -> Result<Filter, String> {
    if text.chars().count() > MAX_FILTER_CHARS {
        return Err(format!("a filter is at most {MAX_FILTER_CHARS} characters"));
    }
    let tokens = tokenize(text)?;
    let mut parser = Parser { tokens, position: 0, depth: 0 };
    let filter = parser.disjunction()?;
    match parser.tokens.get(parser.position) {
        None => Ok(filter),
        Some(token) => Err(format!("unexpected {token:?} in the filter")),
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Text(String),
    Json(Value),
    Op(Op),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '{' => {
                // A JSON object: up to its matching brace, outside strings.
                let (mut depth, mut in_string, mut escaped, mut object) = (0usize, false, false, String::new());
                for c in chars.by_ref() {
                    object.push(c);
                    match c {
                        _ if escaped => escaped = false,
                        '\\' if in_string => escaped = true,
                        '"' => in_string = !in_string,
                        '{' if !in_string => depth += 1,
                        '}' if !in_string => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let value = serde_json::from_str(&object).map_err(|_| format!("{object} is no JSON object"))?;
                tokens.push(Token::Json(value));
            }
            '(' | ')' => {
                chars.next();
                tokens.push(if c == '(' { Token::Open } else { Token::Close });
            }
            '"' | '\'' => {
                chars.next();
                let mut literal = String::new();
                loop {
                    match chars.next() {
                        None => return Err("an unterminated string in the filter".to_owned()),
                        Some('\\') => literal.push(chars.next().ok_or("a dangling escape in the filter")?),
                        Some(end) if end == c => break,
                        Some(other) => literal.push(other),
                    }
                }
                tokens.push(Token::Text(literal));
            }
            '=' | '!' | '<' | '>' | ':' => {
                chars.next();
                let equals = chars.peek() == Some(&'=');
                let op = match (c, equals) {
                    ('=', _) => Op::Eq,
                    ('!', true) => Op::Ne,
                    ('<', true) => Op::Le,
                    ('<', false) => Op::Lt,
                    ('>', true) => Op::Ge,
                    ('>', false) => Op::Gt,
                    (':', _) => Op::Has,
                    _ => return Err("'!' must be followed by '=' in the filter".to_owned()),
                };
                if equals && c != '=' && c != ':' {
                    chars.next();
                }
                tokens.push(Token::Op(op));
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || "()=!<>:\"'".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

struct Parser {
    tokens: Vec<Token>,
    position: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 32;

impl Parser {
    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.position), Some(Token::Word(found)) if found == word)
    }

    fn disjunction(&mut self) -> Result<Filter, String> {
        let mut filter = self.conjunction()?;
        while self.peek_word("OR") {
            self.position += 1;
            filter = Filter::Or(Box::new(filter), Box::new(self.conjunction()?));
        }
        Ok(filter)
    }

    /// Terms side by side are joined by AND, as AIP-160 says.
    fn conjunction(&mut self) -> Result<Filter, String> {
        let mut filter = self.term()?;
        loop {
            if self.peek_word("AND") {
                self.position += 1;
            } else if self.position >= self.tokens.len()
                || self.peek_word("OR")
                || self.tokens[self.position] == Token::Close
            {
                return Ok(filter);
            }
            filter = Filter::And(Box::new(filter), Box::new(self.term()?));
        }
    }

    fn term(&mut self) -> Result<Filter, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(format!("a filter nests at most {MAX_DEPTH} deep"));
        }
        let term = match self.tokens.get(self.position).cloned() {
            Some(Token::Word(word)) if word == "NOT" || word == "-" => {
                self.position += 1;
                Filter::Not(Box::new(self.term()?))
            }
            Some(Token::Open) => {
                self.position += 1;
                let inner = self.disjunction()?;
                if self.tokens.get(self.position) != Some(&Token::Close) {
                    return Err("a '(' without its ')' in the filter".to_owned());
                }
                self.position += 1;
                inner
            }
            Some(Token::Word(field)) => {
                self.position += 1;
                let Some(Token::Op(op)) = self.tokens.get(self.position).cloned() else {
                    return Err(format!("{field:?} must be followed by a comparison (=, !=, <, <=, >, >=, :)"));
                };
                self.position += 1;
                let literal = match self.tokens.get(self.position).cloned() {
                    Some(Token::Text(text)) => Literal::Text(text),
                    Some(Token::Json(value)) => Literal::Json(value),
                    Some(Token::Word(word)) => match word.as_str() {
                        "true" => Literal::Bool(true),
                        "false" => Literal::Bool(false),
                        _ => match word.parse() {
                            Ok(number) => Literal::Number(number, word),
                            Err(_) => Literal::Text(word),
                        },
                    },
                    _ => return Err(format!("{field:?} is compared with nothing")),
                };
                self.position += 1;
                let path = field.split('.').map(str::to_owned).collect();
                Filter::Compare { path, op, literal }
            }
            Some(token) => return Err(format!("unexpected {token:?} in the filter")),
            None => return Err("the filter ends too early".to_owned()),
        };
        self.depth -= 1;
        Ok(term)
    }
}

/// Field names may come camelCase; resources carry snake_case names. A key is looked up as
/// written first, since map keys (a scope's, a label's) are names the client chose.
pub fn snake_case(name: &str) -> String {
    let mut snake = String::with_capacity(name.len() + 4);
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            snake.push('_');
            snake.push(c.to_ascii_lowercase());
        } else {
            snake.push(c);
        }
    }
    snake
}

impl Filter {
    pub fn matches(&self, resource: &Value) -> bool {
        match self {
            Filter::And(left, right) => left.matches(resource) && right.matches(resource),
            Filter::Or(left, right) => left.matches(resource) || right.matches(resource),
            Filter::Not(inner) => !inner.matches(resource),
            Filter::Compare { path, op, literal } => {
                let mut values = vec![resource];
                fn field<'v>(value: &'v Value, key: &str) -> Option<&'v Value> {
                    value.get(key).or_else(|| value.get(snake_case(key)))
                }
                for key in path {
                    values = values
                        .into_iter()
                        .flat_map(|value| match value {
                            // A list in the path: any element may match (`topics.managed_memory_topic`).
                            Value::Array(items) => items.iter().filter_map(|item| field(item, key)).collect::<Vec<_>>(),
                            value => field(value, key).into_iter().collect(),
                        })
                        .collect();
                }
                values.into_iter().any(|value| compare(value, *op, literal))
            }
        }
    }

    /// The user id a filter pins, when it is exactly `user_id="..."`: a list can then ask the
    /// store for that user's sessions instead of reading all.
    pub fn user_id(&self) -> Option<&str> {
        match self {
            Filter::Compare { path, op: Op::Eq, literal: Literal::Text(user) }
                if path.len() == 1 && snake_case(&path[0]) == "user_id" =>
            {
                Some(user)
            }
            _ => None,
        }
    }
}

fn compare(value: &Value, op: Op, literal: &Literal) -> bool {
    use std::cmp::Ordering;
    let ordering = match (value, literal) {
        (Value::Array(items), _) if op == Op::Has => return items.iter().any(|item| compare(item, Op::Eq, literal)),
        (Value::String(text), Literal::Text(expected)) if op == Op::Has => return text.contains(expected.as_str()),
        (Value::String(text), Literal::Text(expected)) => match (instant(text), instant(expected)) {
            (Some(left), Some(right)) => left.cmp(&right),
            _ => text.as_str().cmp(expected.as_str()),
        },
        (Value::Number(number), Literal::Number(expected, _)) => {
            number.as_f64().and_then(|number| number.partial_cmp(expected)).unwrap_or(Ordering::Less)
        }
        (Value::String(text), Literal::Number(_, written)) => match op {
            Op::Has => return text.contains(written.as_str()),
            _ => text.as_str().cmp(written.as_str()),
        },
        // Equality only: a whole object, such as a scope.
        (Value::Object(_), Literal::Json(expected)) if matches!(op, Op::Eq | Op::Ne) => {
            return (value == expected) == (op == Op::Eq);
        }
        (Value::Number(number), Literal::Text(expected)) => match expected.parse::<f64>() {
            Ok(expected) => number.as_f64().and_then(|number| number.partial_cmp(&expected)).unwrap_or(Ordering::Less),
            Err(_) => return op == Op::Ne,
        },
        (Value::Bool(flag), Literal::Bool(expected)) => flag.cmp(expected),
        (Value::Bool(flag), Literal::Text(expected)) => match expected.as_str() {
            "true" => flag.cmp(&true),
            "false" => flag.cmp(&false),
            _ => return op == Op::Ne,
        },
        _ => return op == Op::Ne,
    };
    match op {
        Op::Eq | Op::Has => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
    }
}

fn instant(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|at| at.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_filters_adk_and_the_sdk_send() {
        let session = json!({"user_id": "u1", "labels": {"team": "a"}});
        assert!(parse(r#"user_id="u1""#).unwrap().matches(&session));
        assert!(!parse(r#"user_id="u2""#).unwrap().matches(&session));
        assert_eq!(parse(r#"user_id="u\"1""#).unwrap().user_id(), Some("u\"1"));
        let event = json!({"timestamp": "2026-12-05T10:00:00.000000Z"});
        assert!(parse(r#"timestamp>="2026-12-05T09:59:59+00:00""#).unwrap().matches(&event));
        assert!(!parse(r#"timestamp>="2026-12-05T10:00:01+00:00""#).unwrap().matches(&event));
        assert!(parse(r#"timestamp>="2026-12-05T11:00:00+01:00""#).unwrap().matches(&event));
    }

    #[test]
    fn memories_match_on_scope_topics_metadata_and_text() {
        let memory = json!({
            "fact": "User likes coffee", "scope": {"user_id": "u9", "app_name": "app"},
            "topics": [{"managed_memory_topic": "USER_PREFERENCES"}], "metadata": {"rank": 3, "source": "chat"},
        });
        let matches = |filter: &str| parse(filter).unwrap().matches(&memory);
        assert!(matches(r#"scope.user_id="u9""#));
        assert!(matches(r#"scope.user_id="u9" AND scope.app_name="app""#));
        assert!(!matches(r#"scope.user_id="u9" AND NOT scope.app_name="app""#));
        assert!(matches(r#"scope.user_id="u1" OR fact:"coffee""#));
        assert!(matches(r#"topics.managedMemoryTopic="USER_PREFERENCES""#));
        assert!(matches("metadata.rank>2 metadata.source=chat"));
        assert!(!matches("(metadata.rank<=2)"));
        assert!(!matches(r#"missing="x""#));
        assert!(!matches(r#"missing!="x""#), "a field the memory lacks compares false");
        assert!(matches(r#"scope={"user_id": "u9", "app_name": "app"}"#), "the documented JSON form");
        assert!(!matches(r#"scope={"user_id":"u9"}"#), "a scope is matched whole");
        let numeric = json!({"scope": {"user_id": "123"}});
        assert!(parse("scope.user_id=123").unwrap().matches(&numeric), "Google's own purge test");
        assert!(matches(r#"NOT missing="x""#));
    }

    #[test]
    fn malformed_filters_are_refused() {
        for bad in ["", "user_id", "user_id=", "(a=1", "a=1)", r#"a="x"#, "a!1", "AND a=1", &"(".repeat(40)] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
