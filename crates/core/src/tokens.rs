//! Token counting: how much of a model's window a piece of text takes, under the tokenizer the
//! server is configured with (`SESSION_TOKENIZER`).
//!
//! OpenAI's `o200k_base` (GPT-4o, GPT-4.1, o-series) and `cl100k_base` (GPT-4, GPT-3.5) are
//! counted exactly, with GitHub's `bpe-openai`, which counts without building the token list.
//! Models whose tokenizer is not public (Claude, Gemini) get `approximate`: one token per four
//! bytes of UTF-8, rounded up. That is the rule of thumb providers publish for English; it is
//! within about 10 % of `o200k_base` on English prose and overcounts code and non-Latin text,
//! which errs on the side of fitting the window.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tokenizer {
    #[default]
    O200kBase,
    Cl100kBase,
    Approximate,
}

impl Tokenizer {
    pub const NAMES: [&'static str; 3] = ["o200k_base", "cl100k_base", "approximate"];

    pub fn as_str(self) -> &'static str {
        match self {
            Tokenizer::O200kBase => "o200k_base",
            Tokenizer::Cl100kBase => "cl100k_base",
            Tokenizer::Approximate => "approximate",
        }
    }

    /// Tokens `text` takes.
    pub fn count(self, text: &str) -> u32 {
        let n = match self {
            Tokenizer::O200kBase => bpe_openai::o200k_base().count(text),
            Tokenizer::Cl100kBase => bpe_openai::cl100k_base().count(text),
            Tokenizer::Approximate => text.len().div_ceil(4),
        };
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Tokens an event's content takes: its text, or the compact JSON of structured content
    /// (what a client sends a model when it passes the content on as it is).
    pub fn count_content(self, content: &Value) -> u32 {
        match content {
            Value::String(text) => self.count(text),
            other => self.count(&other.to_string()),
        }
    }
}

impl fmt::Display for Tokenizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tokenizer {
    type Err = String;

    fn from_str(text: &str) -> Result<Tokenizer, String> {
        match text {
            "o200k_base" => Ok(Tokenizer::O200kBase),
            "cl100k_base" => Ok(Tokenizer::Cl100kBase),
            "approximate" => Ok(Tokenizer::Approximate),
            _ => Err(format!("unknown tokenizer {text:?}; expected one of {}", Tokenizer::NAMES.join(", "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts checked against OpenAI's `tiktoken` (through tiktoken-rs 0.12) for the same text.
    #[test]
    fn counts_match_openai_tiktoken() {
        let cases = [
            ("Hello, world!", 4, 4),
            ("I moved to Hamburg last month, so I don't live in Berlin any more.", 16, 17),
            ("Schadenfreude über die Straßenbahn 🚋", 10, 13),
        ];
        for (text, o200k, cl100k) in cases {
            assert_eq!(Tokenizer::O200kBase.count(text), o200k, "{text}");
            assert_eq!(Tokenizer::Cl100kBase.count(text), cl100k, "{text}");
        }
        // Structured content counts as its compact JSON.
        let json = serde_json::json!({"tool": "search"});
        assert_eq!(Tokenizer::O200kBase.count("{\"tool\":\"search\"}"), 5);
        assert_eq!(Tokenizer::O200kBase.count_content(&json), 5);
    }

    #[test]
    fn approximation_is_a_quarter_of_the_bytes_rounded_up() {
        assert_eq!(Tokenizer::Approximate.count(""), 0);
        assert_eq!(Tokenizer::Approximate.count("abcde"), 2);
        assert_eq!(Tokenizer::Approximate.count("ü"), 1);
    }

    #[test]
    fn names_round_trip() {
        for name in Tokenizer::NAMES {
            assert_eq!(name.parse::<Tokenizer>().unwrap().as_str(), name);
        }
        assert!("gpt2".parse::<Tokenizer>().is_err());
    }
}
