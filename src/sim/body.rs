//! The simulator's own, strict reading of request bodies.
//!
//! Deliberately independent of the client's serde structs (`crate::em::xml`): a bug in how the
//! client writes EM's XML must show up as a 400 here, not hide behind shared code. A body is read
//! into a small element tree (XML as is; JSON mapped onto the same tree), then checked against a
//! [`Schema`]: the root's name and namespace, each element's position in the sequence, required
//! elements, and each value's type.

use quick_xml::NsReader;
use quick_xml::escape::{resolve_predefined_entity, unescape};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

use crate::em::xml::NAMESPACE;

/// One element of a request body.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Element {
    pub name: String,
    pub namespace: Option<String>,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// Texts of the items of a list element such as `CloudGateways/CloudGatewayUid`.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.child(name)
            .map(|c| c.children.iter().map(|i| i.text.clone()).collect())
            .unwrap_or_default()
    }
}

/// Reads an XML document into an element tree. Every problem is a message fit for EM's `Error`.
pub fn parse_xml(text: &str) -> Result<Element, String> {
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| format!("The request body is not well-formed XML: {e}"))?;
        let namespace = match ns {
            ResolveResult::Bound(n) => Some(n.as_ref().to_string()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(format!("The XML prefix [{p}] is not declared."));
            }
        };
        match event {
            Event::Start(start) | Event::Empty(start) if root.is_some() => {
                let _ = start;
                return Err("The request body has content after its root element.".into());
            }
            Event::Start(ref start) | Event::Empty(ref start) => {
                let name = start.local_name().as_ref().to_string();
                let mut attrs = Vec::new();
                for attr in start.attributes() {
                    let attr = attr.map_err(|e| format!("Bad attribute in <{name}>: {e}"))?;
                    let key = attr.key.as_ref().to_string();
                    if key == "xmlns" || key.starts_with("xmlns:") {
                        continue;
                    }
                    let value = attr
                        .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                        .map_err(|e| format!("Bad attribute value in <{name}>: {e}"))?
                        .into_owned();
                    let local = key.rsplit(':').next().unwrap_or(&key).to_string();
                    attrs.push((local, value));
                }
                let element = Element {
                    name,
                    namespace,
                    attrs,
                    ..Element::default()
                };
                if matches!(event, Event::Empty(_)) {
                    close(element, &mut stack, &mut root)?;
                } else {
                    stack.push(element);
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or("The request body has an unmatched end tag.")?;
                close(element, &mut stack, &mut root)?;
            }
            Event::Text(t) => {
                let raw = t.xml10_content();
                let text = unescape(&raw).map_err(|e| format!("Bad text in the body: {e}"))?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&text),
                    None if text.trim().is_empty() => {}
                    None => {
                        return Err("The request body has text outside its root element.".into());
                    }
                }
            }
            Event::CData(c) => {
                let text = c.into_inner().into_owned();
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                let name = r.xml10_content().into_owned();
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_predefined_entity(&name)
                        .ok_or_else(|| format!("Unknown XML entity [&{name};]."))?
                        .to_string(),
                    Err(e) => return Err(format!("Bad character reference: {e}")),
                };
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&resolved);
                }
            }
            Event::DocType(_) => return Err("DTDs are not allowed.".into()),
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err("The request body ends inside an element.".into());
    }
    root.ok_or_else(|| "Node [root] does not exist.".to_string())
}

fn close(
    element: Element,
    stack: &mut [Element],
    root: &mut Option<Element>,
) -> Result<(), String> {
    let mut element = element;
    if !element.children.is_empty() {
        if !element.text.trim().is_empty() {
            return Err(format!(
                "Element <{}> mixes text and elements.",
                element.name
            ));
        }
        element.text.clear();
    }
    match stack.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Schemas
// ---------------------------------------------------------------------------------------------

/// The type of an element's value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Text,
    /// Non-empty text.
    Name,
    Bool,
    /// A TCP port, 1..=65535.
    Port,
    Enum(&'static [&'static str]),
    /// `urn:veeam:<Type>:<guid>`.
    Uid(&'static str),
    /// A wrapper of repeated `item` elements, each a UID of the given type.
    UidList {
        item: &'static str,
        uid_type: &'static str,
        min: usize,
    },
    /// Anything (accepted and ignored, e.g. `Links` in a PUT of a whole entity).
    Any,
}

#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub name: &'static str,
    pub required: bool,
    pub kind: Kind,
}

pub const fn required(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: true,
        kind,
    }
}

pub const fn optional(name: &'static str, kind: Kind) -> Field {
    Field {
        name,
        required: false,
        kind,
    }
}

/// A root element and its children's sequence.
#[derive(Debug)]
pub struct Schema {
    pub root: &'static str,
    pub fields: &'static [Field],
}

impl Schema {
    /// Checks a body read from XML: namespace, sequence, values.
    pub fn check_xml(&self, root: &Element) -> Result<(), String> {
        if root.name != self.root {
            return Err(format!(
                "The root element must be <{}>, not <{}>.",
                self.root, root.name
            ));
        }
        if root.namespace.as_deref() != Some(NAMESPACE) {
            return Err(format!(
                "The root element <{}> must be in the namespace {NAMESPACE}.",
                self.root
            ));
        }
        self.check_sequence(root)
    }

    fn check_sequence(&self, root: &Element) -> Result<(), String> {
        let mut position = 0usize;
        for (at, child) in root.children.iter().enumerate() {
            if child.namespace.as_deref() != Some(NAMESPACE) {
                return Err(format!(
                    "Element <{}> must be in the namespace {NAMESPACE}.",
                    child.name
                ));
            }
            let Some(index) = self.fields.iter().position(|f| f.name == child.name) else {
                return Err(format!(
                    "Element <{}> is not expected in <{}>.",
                    child.name, self.root
                ));
            };
            if index + 1 == position {
                return Err(format!("Element <{}> occurs more than once.", child.name));
            }
            if index < position {
                let before = self.fields[position - 1].name;
                return Err(format!(
                    "Element <{}> is out of order in <{}>: it must come before <{before}>.",
                    child.name, self.root
                ));
            }
            if let Some(missing) = self.fields[position..index].iter().find(|f| f.required) {
                if root.children[at..].iter().any(|c| c.name == missing.name) {
                    return Err(format!(
                        "Element <{}> is out of order in <{}>: it must come before <{}>.",
                        missing.name, self.root, child.name
                    ));
                }
                return Err(format!(
                    "Element <{}> is missing in <{}> (expected before <{}>).",
                    missing.name, self.root, child.name
                ));
            }
            check_value(&self.fields[index], child)?;
            position = index + 1;
        }
        if let Some(missing) = self.fields[position..].iter().find(|f| f.required) {
            return Err(format!(
                "Element <{}> is missing in <{}>.",
                missing.name, self.root
            ));
        }
        Ok(())
    }

    /// Maps a JSON body onto an element tree in schema order (JSON has no order), then checks
    /// it. Property names match case-insensitively; list wrappers accept EM's plural array
    /// (`{"CloudGatewayUids": [...]}`), a singular string and a singular array.
    pub fn read_json(&self, value: &serde_json::Value) -> Result<Element, String> {
        let object = value
            .as_object()
            .ok_or("The JSON request body must be an object.")?;
        let mut root = Element {
            name: self.root.to_string(),
            namespace: Some(NAMESPACE.to_string()),
            ..Element::default()
        };
        for (key, value) in object {
            let field = self
                .fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(key));
            let Some(field) = field else {
                if ["name", "uid", "href", "type", "links"]
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(key))
                {
                    if key.eq_ignore_ascii_case("name") && !value.is_null() {
                        root.attrs.push(("Name".into(), json_scalar(value)?));
                    }
                    continue;
                }
                return Err(format!(
                    "Property [{key}] is not expected in {}.",
                    self.root
                ));
            };
            if value.is_null() {
                continue;
            }
            root.children.push(json_element(field, value)?);
        }
        root.children.sort_by_key(|c| {
            self.fields
                .iter()
                .position(|f| f.name == c.name)
                .unwrap_or(usize::MAX)
        });
        self.check_sequence(&root)?;
        Ok(root)
    }
}

fn json_scalar(value: &serde_json::Value) -> Result<String, String> {
    match value {
        serde_json::Value::String(s) => Ok(s.clone()),
        serde_json::Value::Number(n) => Ok(n.to_string()),
        serde_json::Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("Expected a value, found {other}.")),
    }
}

fn json_element(field: &Field, value: &serde_json::Value) -> Result<Element, String> {
    let mut element = Element {
        name: field.name.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        ..Element::default()
    };
    match field.kind {
        Kind::UidList { item, .. } => {
            let items: Vec<&serde_json::Value> = match value {
                serde_json::Value::Object(map) => map
                    .iter()
                    .filter(|(k, _)| {
                        k.eq_ignore_ascii_case(item) || k.eq_ignore_ascii_case(&format!("{item}s"))
                    })
                    .flat_map(|(_, v)| match v {
                        serde_json::Value::Array(a) => a.iter().collect::<Vec<_>>(),
                        serde_json::Value::Null => Vec::new(),
                        other => vec![other],
                    })
                    .collect(),
                serde_json::Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for v in items {
                element.children.push(Element {
                    name: item.to_string(),
                    namespace: Some(NAMESPACE.to_string()),
                    text: json_scalar(v)?,
                    ..Element::default()
                });
            }
        }
        Kind::Any => {}
        _ => element.text = json_scalar(value)?,
    }
    Ok(element)
}

fn check_value(field: &Field, element: &Element) -> Result<(), String> {
    let text = element.text.as_str();
    let bad = |what: &str| {
        Err(format!(
            "The value [{text}] of element <{}> is not {what}.",
            field.name
        ))
    };
    match field.kind {
        Kind::Any | Kind::Text => Ok(()),
        Kind::Name if text.trim().is_empty() => {
            Err(format!("Element <{}> must not be empty.", field.name))
        }
        Kind::Name => Ok(()),
        Kind::Bool => match text {
            "true" | "false" | "1" | "0" => Ok(()),
            _ => bad("a boolean"),
        },
        Kind::Port => match text.trim().parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(()),
            _ => bad("a port number between 1 and 65535"),
        },
        Kind::Enum(values) if values.contains(&text) => Ok(()),
        Kind::Enum(values) => bad(&format!("one of {}", values.join(", "))),
        Kind::Uid(uid_type) => check_uid(field.name, uid_type, text),
        Kind::UidList {
            item,
            uid_type,
            min,
        } => {
            if element.children.len() < min {
                return Err(format!(
                    "Element <{}> must contain at least {min} <{item}>.",
                    field.name
                ));
            }
            for child in &element.children {
                if child.name != item {
                    return Err(format!(
                        "Element <{}> is not expected in <{}>.",
                        child.name, field.name
                    ));
                }
                check_uid(item, uid_type, &child.text)?;
            }
            Ok(())
        }
    }
}

/// `urn:veeam:<Type>:<guid>`, with the XSD's character rules (so no spaces).
pub fn check_uid(element: &str, uid_type: &str, text: &str) -> Result<(), String> {
    parse_uid(uid_type, text).map(|_| ()).ok_or_else(|| {
        format!("The value [{text}] of element <{element}> is not a valid {uid_type} UID.")
    })
}

/// The guid of a `urn:veeam:<uid_type>:<guid>` UID, or of a bare guid.
pub fn parse_uid(uid_type: &str, text: &str) -> Option<uuid::Uuid> {
    let guid = match text.strip_prefix("urn:veeam:") {
        Some(rest) => {
            let (t, guid) = rest.split_once(':')?;
            if !t.eq_ignore_ascii_case(uid_type) {
                return None;
            }
            guid
        }
        None => text,
    };
    if guid.len() != 36 {
        return None;
    }
    uuid::Uuid::parse_str(guid).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: Schema = Schema {
        root: "Spec",
        fields: &[
            required("A", Kind::Name),
            optional("B", Kind::Port),
            required("C", Kind::Enum(&["Direct", "NAT"])),
        ],
    };

    fn check(body: &str) -> Result<(), String> {
        SPEC.check_xml(&parse_xml(body)?)
    }

    #[test]
    fn accepts_a_body_in_order() {
        let ok =
            format!(r#"<Spec xmlns="{NAMESPACE}"><A>x &amp; y</A><B>6180</B><C>NAT</C></Spec>"#);
        check(&ok).unwrap();
        let root = parse_xml(&ok).unwrap();
        assert_eq!(root.child_text("A"), Some("x & y"));
    }

    #[test]
    fn names_the_problem() {
        let cases = [
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><C>NAT</C><A>x</A></Spec>"#),
                "out of order",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><B>1</B><C>NAT</C></Spec>"#),
                "<A> is missing",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><A>x</A></Spec>"#),
                "<C> is missing",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><A>x</A><Z/><C>NAT</C></Spec>"#),
                "<Z> is not expected",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><A>x</A><B>0</B><C>NAT</C></Spec>"#),
                "port number",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><A>x</A><C>Nat</C></Spec>"#),
                "one of Direct, NAT",
            ),
            (
                format!(r#"<Spec xmlns="{NAMESPACE}"><A>x</A><A>y</A><C>NAT</C></Spec>"#),
                "more than once",
            ),
            (
                r#"<Spec><A>x</A><C>NAT</C></Spec>"#.to_string(),
                "namespace",
            ),
            (
                format!(r#"<Other xmlns="{NAMESPACE}"/>"#),
                "root element must be <Spec>",
            ),
            ("<Spec><A>".to_string(), "ends inside"),
            ("not xml".to_string(), "root"),
        ];
        for (body, expected) in cases {
            let err = check(&body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn uids_follow_the_xsd_pattern() {
        let g = "29e5d158-1f58-44bc-bbaa-2752d787a91d";
        assert!(parse_uid("BackupServer", &format!("urn:veeam:BackupServer:{g}")).is_some());
        assert!(parse_uid("BackupServer", g).is_some());
        assert!(parse_uid("BackupServer", &format!("urn:veeam:CloudGateway:{g}")).is_none());
        assert!(parse_uid("BackupServer", &format!("urn:veeam:BackupServer:{g} {g}")).is_none());
    }

    #[test]
    fn json_bodies_map_onto_the_same_checks() {
        let json = serde_json::json!({"c": "Direct", "A": "x"});
        let root = SPEC.read_json(&json).unwrap();
        assert_eq!(root.children[0].name, "A");
        let bad = serde_json::json!({"A": "x", "C": "Direct", "Nope": 1});
        assert!(SPEC.read_json(&bad).unwrap_err().contains("Nope"));
    }
}
