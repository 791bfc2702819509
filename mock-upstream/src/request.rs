//! Cheap parsing of chat requests (OpenAI and Anthropic share what the mock needs).
//!
//! Only the fields the mock uses are read; strings are borrowed from the body, and
//! message contents are never stored: they are only counted.
//!
//! Prompt tokens are defined as the number of whitespace-separated words in every
//! message's text (a string `content`, or the `text` of content parts, recursively
//! through nested `content`) plus Anthropic's top-level `system`.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The fields of a chat request the mock needs.
#[derive(Debug, Deserialize)]
pub struct ChatRequest<'a> {
    /// Model name, echoed back.
    #[serde(borrow)]
    pub model: Cow<'a, str>,
    /// Word count of all messages.
    pub messages: Messages,
    /// Whether to answer as a stream.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Output token cap (OpenAI legacy name; Anthropic's name).
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Output token cap (OpenAI's current name).
    #[serde(default)]
    pub max_completion_tokens: Option<u32>,
    /// OpenAI stream options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Anthropic's system prompt (string or text blocks), counted as prompt.
    #[serde(default)]
    pub system: Option<Words>,
}

/// OpenAI `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Whether to send a final usage chunk.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

impl ChatRequest<'_> {
    /// Parses a request body.
    pub fn parse(body: &[u8]) -> Result<ChatRequest<'_>, serde_json::Error> {
        serde_json::from_slice(body)
    }

    /// Prompt token count (see the module doc).
    pub fn prompt_tokens(&self) -> u64 {
        self.messages.0 + self.system.as_ref().map_or(0, |w| w.0)
    }

    /// Whether a stream was asked for.
    pub fn is_stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the stream should end with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The smallest output cap the request gives, if any.
    pub fn max_output(&self) -> Option<u32> {
        match (self.max_tokens, self.max_completion_tokens) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// The `messages` array, reduced to its word count; anything but an array is rejected.
#[derive(Debug, Default)]
pub struct Messages(pub u64);

impl<'de> Deserialize<'de> for Messages {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessagesVisitor;
        impl<'de> Visitor<'de> for MessagesVisitor {
            type Value = Messages;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of messages")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Messages, A::Error> {
                let mut words = 0;
                while let Some(message) = seq.next_element::<Message>()? {
                    words += message.content.map_or(0, |w| w.0);
                }
                Ok(Messages(words))
            }
        }
        deserializer.deserialize_seq(MessagesVisitor)
    }
}

/// One message: only its content matters.
#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<Words>,
}

/// Word count of a text value: a string, or parts whose `text`/`content` hold text.
#[derive(Debug, Default)]
pub struct Words(pub u64);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum PartKey {
    Text,
    Content,
    #[serde(other)]
    Other,
}

impl<'de> Deserialize<'de> for Words {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WordsVisitor)
    }
}

struct WordsVisitor;

impl<'de> Visitor<'de> for WordsVisitor {
    type Value = Words;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("message content (a string or an array of parts)")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Words, E> {
        Ok(Words(v.split_whitespace().count() as u64))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_none<E: de::Error>(self) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Words, E> {
        Ok(Words(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Words, A::Error> {
        let mut words = 0;
        while let Some(part) = seq.next_element::<Words>()? {
            words += part.0;
        }
        Ok(Words(words))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Words, A::Error> {
        let mut words = 0;
        while let Some(key) = map.next_key::<PartKey>()? {
            match key {
                PartKey::Text | PartKey::Content => words += map.next_value::<Words>()?.0,
                PartKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Words(words))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_counts() {
        let body = br#"{"model":"m","stream":true,"max_tokens":5,"max_completion_tokens":7,
            "stream_options":{"include_usage":true},"temperature":0.2,
            "system":[{"type":"text","text":"be brief"}],
            "messages":[{"role":"user","content":"hello  big\nworld"},
                        {"role":"assistant","content":null,"tool_calls":[{"id":"x"}]},
                        {"role":"user","content":[{"type":"text","text":"one two"},
                            {"type":"image_url","image_url":{"url":"http://x"}},
                            {"type":"tool_result","content":[{"type":"text","text":"three"}]}]}]}"#;
        let req = ChatRequest::parse(body).unwrap();
        assert_eq!(req.model, "m");
        assert!(matches!(req.model, Cow::Borrowed(_)));
        assert!(req.is_stream());
        assert!(req.include_usage());
        assert_eq!(req.max_output(), Some(5));
        assert_eq!(req.prompt_tokens(), 2 + 3 + 2 + 1);
    }

    #[test]
    fn rejects_bad_shapes() {
        let err = ChatRequest::parse(br#"{"model":"m","messages":"hi"}"#).unwrap_err();
        assert!(err.to_string().contains("an array of messages"), "{err}");
        let err = ChatRequest::parse(br#"{"messages":[]}"#).unwrap_err();
        assert!(err.to_string().contains("missing field `model`"), "{err}");
        let err = ChatRequest::parse(br#"{"model":"m"}"#).unwrap_err();
        assert!(
            err.to_string().contains("missing field `messages`"),
            "{err}"
        );
        assert!(ChatRequest::parse(b"{\"model\":").is_err());
    }

    #[test]
    fn escaped_model_is_owned() {
        let req = ChatRequest::parse(br#"{"model":"a\"b","messages":[]}"#).unwrap();
        assert_eq!(req.model, "a\"b");
        assert_eq!(req.prompt_tokens(), 0);
        assert!(!req.is_stream());
        assert_eq!(req.max_output(), None);
    }
}
