//! JSON log lines: a span's fields written straight as the JSON object the lines carry.
//!
//! tracing-subscriber's `JsonFields` writes a span's fields by building a map of
//! `serde_json::Value`s and serializing it: 21k instructions for the request span, on every
//! request, though its fields reach a log line only when one is logged inside the request
//! (rare: a refusal, a failure). Here they are escaped and written as they come (tracing hands
//! each field once). A field recorded later is appended to the object, where `JsonFields` parses
//! and re-writes it whole; the line's parse keeps the last of a name given twice, as the map
//! did. So a span recorded again and again grows by each record: the request span is recorded
//! at most twice (its status, on an error), an EM call's once (EM's task id).

use std::fmt::{self, Write};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::Writer;

/// Formats span fields as one JSON object, for `Format<Json>`'s lines.
#[derive(Debug, Default, Clone, Copy)]
pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut object = Object::new(&mut writer, true);
        fields.record(&mut object);
        object.finish()
    }

    fn add_fields(
        &self,
        current: &'writer mut FormattedFields<Self>,
        fields: &tracing::span::Record<'_>,
    ) -> fmt::Result {
        // `{…}` (or nothing yet): reopened, the new fields go in before its brace.
        let first = match current.fields.strip_suffix('}') {
            Some(open) => {
                let empty = open == "{";
                current.fields.truncate(open.len());
                empty
            }
            None => {
                current.fields.clear();
                current.fields.push('{');
                true
            }
        };
        let mut writer = current.as_writer();
        let mut object = Object::reopened(&mut writer, first);
        fields.record(&mut object);
        object.finish()
    }
}

/// A JSON object being written, one field at a time.
struct Object<'a, W: Write> {
    out: &'a mut W,
    /// No field written yet.
    first: bool,
    result: fmt::Result,
}

impl<'a, W: Write> Object<'a, W> {
    fn new(out: &'a mut W, first: bool) -> Self {
        let result = out.write_char('{');
        Object { out, first, result }
    }

    /// An object whose `{` and `first` fields are written already.
    fn reopened(out: &'a mut W, first: bool) -> Self {
        Object {
            out,
            first,
            result: Ok(()),
        }
    }

    /// The field's name and colon, after a comma unless it is the first.
    fn name(&mut self, field: &Field) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.out.write_char(',')?;
        }
        escaped(self.out, field.name())?;
        self.out.write_char(':')
    }

    fn field(&mut self, field: &Field, value: impl FnOnce(&mut W) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(self.out));
        }
    }

    fn finish(self) -> fmt::Result {
        self.result?;
        self.out.write_char('}')
    }
}

impl<W: Write> Visit for Object<'_, W> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, |out| escaped(out, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        // Display values (`%x`) come here too, as their Display.
        self.field(field, |out| escaped(out, &format!("{value:?}")));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.field(field, |out| write!(out, "{value}"));
    }

    // 128-bit integers go to `record_debug`, a string, as with `JsonFields`: a JSON reader's
    // number would lose their precision.

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.field(field, |out| write!(out, "{value}"));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // As serde_json writes it (`3.0`, not `3`); JSON has no NaN or infinity: null.
        self.field(field, |out| match serde_json::Number::from_f64(value) {
            Some(number) => write!(out, "{number}"),
            None => out.write_str("null"),
        });
    }
}

/// `text` as a JSON string.
fn escaped(out: &mut impl Write, text: &str) -> fmt::Result {
    out.write_char('"')?;
    // By bytes: what JSON escapes is ASCII, and no byte of a longer UTF-8 character is, so
    // every cut falls on a character boundary.
    let mut plain = 0;
    for (at, byte) in text.bytes().enumerate() {
        let escape = match byte {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..0x20 => "",
            _ => continue,
        };
        out.write_str(&text[plain..at])?;
        if escape.is_empty() {
            write!(out, "\\u{byte:04x}")?;
        } else {
            out.write_str(escape)?;
        }
        plain = at + 1;
    }
    out.write_str(&text[plain..])?;
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_as_json_reads_them() {
        let cases = [
            "",
            "plain",
            "quote \" and backslash \\",
            "lines\nand\r\ttabs",
            "controls \u{0} \u{1f} \u{7f}",
            "é, ü, 日本, 🦀",
            "\\u0041 stays text",
            "ends with \\",
        ];
        for text in cases {
            let mut out = String::new();
            escaped(&mut out, text).unwrap();
            let back: String = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{out}: {e}"));
            assert_eq!(back, text, "{out}");
        }
    }

    /// The request span's fields as the JSON lines read them, and again after fields recorded
    /// later: what `JsonFields` gives, without its map.
    #[test]
    fn span_fields_are_one_object_and_later_records_join_it() {
        use tracing_subscriber::fmt::format::JsonFields;
        use tracing_subscriber::layer::SubscriberExt;

        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }

        fn logged<N>(fields: N) -> Vec<serde_json::Value>
        where
            N: for<'w> FormatFields<'w> + Send + Sync + 'static,
        {
            let lines = Lines::default();
            let writer = lines.clone();
            let subscriber = tracing_subscriber::registry().with(
                tracing_subscriber::fmt::layer()
                    .event_format(tracing_subscriber::fmt::format().json().flatten_event(true))
                    .fmt_fields(fields)
                    .with_writer(move || writer.clone()),
            );
            tracing::subscriber::with_default(subscriber, || {
                let span = tracing::info_span!(
                    "HTTP request",
                    http.method = "GET",
                    http.target = %"/v1/tasks?a=\"b\"\n",
                    http.status_code = tracing::field::Empty,
                    count = 3_u64,
                    signed = -4_i64,
                    ratio = 0.5_f64,
                    whole = 3.0_f64,
                    huge = u128::MAX,
                    nan = f64::NAN,
                    yes = true,
                    r#type = "raw",
                    debug = ?Some("x"),
                    empty = tracing::field::Empty,
                );
                span.in_scope(|| tracing::warn!("before"));
                span.record("http.status_code", 400_u64);
                span.in_scope(|| tracing::warn!("after one record"));
                span.record("count", 5_u64);
                span.record("empty", "now set");
                span.in_scope(|| tracing::warn!("after two more"));
                let quiet = tracing::info_span!("quiet", late = tracing::field::Empty);
                quiet.record("late", "é\u{1}");
                quiet.in_scope(|| tracing::warn!("a span born empty"));
            });
            let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
            text.lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
                .collect()
        }

        let ours = logged(JsonSpanFields);
        let theirs = logged(JsonFields::new());
        assert_eq!(ours.len(), 4);
        let spans = |lines: &[serde_json::Value]| -> Vec<serde_json::Value> {
            lines.iter().map(|l| l["span"].clone()).collect()
        };
        assert_eq!(spans(&ours), spans(&theirs));
        assert_eq!(ours[0]["span"]["http.target"], "/v1/tasks?a=\"b\"\n");
        assert_eq!(ours[0]["span"]["type"], "raw");
        assert_eq!(ours[0]["span"]["nan"], serde_json::Value::Null);
        assert!(ours[0]["span"]["whole"].is_f64());
        assert_eq!(ours[0]["span"]["huge"], u128::MAX.to_string());
        assert_eq!(ours[1]["span"]["http.status_code"], 400);
        assert_eq!(ours[2]["span"]["count"], 5);
        assert_eq!(ours[2]["span"]["empty"], "now set");
        assert_eq!(ours[3]["span"]["late"], "é\u{1}");
    }
}
