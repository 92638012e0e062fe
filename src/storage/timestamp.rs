//! The date-times of the Storage Service client: what its spec's `{type: string, format:
//! date-time}` becomes in the generated client, in place of chrono's `DateTime<Utc>`.
//!
//! chrono's serde reads a date-time with its relaxed RFC 3339 parser, about 1,800
//! instructions each, and every record the Storage Service answers carries two. What the
//! service writes, `2026-11-24T10:15:30.123456Z`, is read here field by field in about a
//! quarter of that; any other text goes to chrono's parser, so that what is accepted, and the
//! error for what is not, stay chrono's.

use std::{fmt, ops::Range, str::FromStr};

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, ParseError, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// An instant, read and written as RFC 3339.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(DateTime<Utc>);

impl From<DateTime<Utc>> for Timestamp {
    fn from(time: DateTime<Utc>) -> Self {
        Self(time)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(timestamp: Timestamp) -> Self {
        timestamp.0
    }
}

impl FromStr for Timestamp {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        match parse_utc(text.as_bytes()) {
            Some(time) => Ok(Self(time)),
            None => Ok(Self(text.parse::<DateTime<Utc>>()?)),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimestampVisitor)
    }
}

struct TimestampVisitor;

impl de::Visitor<'_> for TimestampVisitor {
    type Value = Timestamp;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an RFC 3339 formatted date and time string")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Timestamp, E> {
        text.parse().map_err(E::custom)
    }
}

/// `YYYY-MM-DDTHH:MM:SS`, then up to nine digits of a fraction after a `.`, then `Z` or
/// `+00:00`: the instant, when it is a valid one. `None` for anything else, leap seconds and
/// other offsets included, which chrono's parser reads.
fn parse_utc(text: &[u8]) -> Option<DateTime<Utc>> {
    let (head, rest) = text.split_at_checked(19)?;
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators
        .iter()
        .any(|&(at, separator)| head[at] != separator)
    {
        return None;
    }
    let field = |range: Range<usize>| number(&head[range]);
    let year = i32::try_from(field(0..4)?).ok()?;
    let date = NaiveDate::from_ymd_opt(year, field(5..7)?, field(8..10)?)?;
    let (nanosecond, offset) = match rest {
        [b'.', fraction_and_offset @ ..] => {
            let digits = fraction_and_offset
                .iter()
                .take_while(|byte| byte.is_ascii_digit())
                .count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let (fraction, offset) = fraction_and_offset.split_at(digits);
            (number(fraction)? * 10_u32.pow(9 - digits as u32), offset)
        }
        offset => (0, offset),
    };
    if !matches!(offset, b"Z" | b"+00:00") {
        return None;
    }
    let second = field(17..19)?;
    if second > 59 {
        return None;
    }
    let time = NaiveTime::from_hms_nano_opt(field(11..13)?, field(14..16)?, second, nanosecond)?;
    Some(NaiveDateTime::new(date, time).and_utc())
}

/// The value of ASCII decimal digits, `None` if any byte is not one.
fn number(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0_u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What chrono's serde makes of `text`: the instant, or its error's text.
    fn chrono_reads(text: &str) -> Result<DateTime<Utc>, String> {
        serde_json::from_value(serde_json::Value::from(text)).map_err(|err| err.to_string())
    }

    fn reads(text: &str) -> Result<DateTime<Utc>, String> {
        serde_json::from_value::<Timestamp>(serde_json::Value::from(text))
            .map(DateTime::from)
            .map_err(|err| err.to_string())
    }

    #[test]
    fn reads_what_chrono_reads_and_refuses_what_it_refuses_in_its_words() {
        let texts = [
            "2026-11-24T10:15:30Z",
            "2026-11-24T10:15:30.1Z",
            "2026-11-24T10:15:30.123456Z",
            "2026-11-24T10:15:30.123456789Z",
            "2026-11-24T10:15:30.1234567891Z",
            "2026-11-24T10:15:30+00:00",
            "2026-11-24T10:15:30.5+00:00",
            "2026-11-24T10:15:30+02:30",
            "2026-11-24T10:15:30.25-05:00",
            "2026-11-24t10:15:30z",
            "2026-11-24 10:15:30Z",
            "2026-11-24T10:15:30-00:00",
            "2016-12-31T23:59:60Z",
            "2016-12-31T23:59:60.5Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
            "2024-02-29T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-31T00:00:00Z",
            "2026-11-24T24:00:00Z",
            "2026-11-24T10:60:00Z",
            "2026-11-24T10:15:61Z",
            "2026-11-24T10:15:30.Z",
            "2026-11-24T10:15:30",
            "2026-11-24T10:15:30ZZ",
            "2026-11-24T10:15:30+00",
            "2026-11-24T1:15:30Z",
            "2026-1-24T10:15:30Z",
            "+2026-11-24T10:15:30Z",
            "2026-11-24T10:15:30.12a4Z",
            "2026-11-24T10:15:3\u{e9}Z",
            "2026-11-24T10:15:30\u{e9}",
            "",
            "now",
        ];
        for text in texts {
            assert_eq!(reads(text), chrono_reads(text), "{text:?}");
        }
    }

    #[test]
    fn the_text_the_storage_service_writes_is_read_without_chrono() {
        for text in [
            "2026-11-24T10:15:30Z",
            "2026-11-24T10:15:30.123456Z",
            "1970-01-01T00:00:00.000000001+00:00",
        ] {
            assert_eq!(
                parse_utc(text.as_bytes()),
                Some(text.parse::<DateTime<Utc>>().unwrap()),
                "{text}"
            );
        }
    }

    #[test]
    fn is_written_as_chrono_writes_it() {
        let time: DateTime<Utc> = "2026-11-24T10:15:30.120Z".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&Timestamp::from(time)).unwrap(),
            serde_json::to_string(&time).unwrap()
        );
        assert_eq!(Timestamp::from(time).to_string(), time.to_string());
    }

    #[test]
    fn refuses_what_is_not_a_string() {
        let refusal = serde_json::from_str::<Timestamp>("1732443330").unwrap_err();
        assert!(
            refusal
                .to_string()
                .contains("an RFC 3339 formatted date and time string"),
            "{refusal}"
        );
    }
}
