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

    /// Whether the element holds any value at all (text, attribute or child with a value).
    pub fn has_content(&self) -> bool {
        !self.text.trim().is_empty()
            || !self.attrs.is_empty()
            || self.children.iter().any(Element::has_content)
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
                let text = unescape(&raw).map_err(|e| match secret(&stack) {
                    Some(name) => format!("Bad text in <{name}>."),
                    None => format!("Bad text in the body: {e}"),
                })?;
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
                        .ok_or_else(|| match secret(&stack) {
                            Some(element) => format!("Unknown XML entity in <{element}>."),
                            None => format!("Unknown XML entity [&{name};]."),
                        })?
                        .to_string(),
                    Err(_) if secret(&stack).is_some() => {
                        return Err("Bad character reference in a password.".into());
                    }
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

/// Elements whose text no message may repeat, not even in part.
const SECRETS: &[&str] = &["Password"];

/// The secret element being read, if the reader is inside one.
fn secret(stack: &[Element]) -> Option<&'static str> {
    let top = stack.last()?;
    SECRETS.iter().copied().find(|s| *s == top.name)
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

/// The type of an element's (or attribute's) value.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Text,
    /// Non-empty text.
    Name,
    /// Text that no message ever repeats (a password).
    Secret,
    Bool,
    /// A TCP port, 1..=65535.
    Port,
    /// A whole number within `min..=max`.
    Int {
        min: i64,
        max: i64,
    },
    /// An `xs:dateTime`; without an offset it is taken as UTC.
    DateTime,
    Enum(&'static [&'static str]),
    /// One of the values, in any letter case.
    EnumAnyCase(&'static [&'static str]),
    /// Text checked by a rule of its own, which returns the whole message.
    Check(fn(&str) -> Result<(), String>),
    /// `urn:veeam:<Type>:<guid>`.
    Uid(&'static str),
    /// A UID, or empty text meaning "none".
    UidOrEmpty(&'static str),
    /// A bare guid.
    Guid,
    /// A wrapper of repeated `item` elements, each a UID of the given type.
    UidList {
        item: &'static str,
        uid_type: &'static str,
        min: usize,
        /// Whether an item may not appear twice.
        unique: bool,
    },
    /// An element with attributes and children of its own.
    Nested(&'static Schema),
    /// A wrapper of repeated `item.root` elements, each checked against `item`.
    List {
        item: &'static Schema,
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

/// An element: its attributes and its children's sequence.
#[derive(Debug)]
pub struct Schema {
    pub root: &'static str,
    /// Attributes that are checked. On a document's root, others are informational and
    /// ignored (`Href`, `Type`, `UID` of an entity sent back); inside, others are refused.
    pub attrs: &'static [Field],
    pub fields: &'static [Field],
    /// Known mistakes (a name from a wrong doc table), each with a hint on what to send.
    pub refused: &'static [(&'static str, &'static str)],
    /// JSON values must have the element's JSON type: `"true"` is not a boolean, `"2"` not
    /// a number.
    pub strict_json: bool,
}

impl Schema {
    pub const fn new(root: &'static str, fields: &'static [Field]) -> Self {
        Schema {
            root,
            attrs: &[],
            fields,
            refused: &[],
            strict_json: false,
        }
    }

    pub const fn attrs(mut self, attrs: &'static [Field]) -> Self {
        self.attrs = attrs;
        self
    }

    pub const fn refusing(mut self, refused: &'static [(&'static str, &'static str)]) -> Self {
        self.refused = refused;
        self
    }

    pub const fn strict_json(mut self) -> Self {
        self.strict_json = true;
        self
    }

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
        self.check_element(root, true)
    }

    fn check_element(&self, element: &Element, root: bool) -> Result<(), String> {
        for attr in self.attrs {
            match element.attr(attr.name) {
                Some(text) => check_text(attr.name, "attribute", attr.kind, text)?,
                None if attr.required => {
                    return Err(format!(
                        "Attribute [{}] is missing in <{}>.",
                        attr.name, self.root
                    ));
                }
                None => {}
            }
        }
        if !root {
            if let Some((name, _)) = element
                .attrs
                .iter()
                .find(|(k, _)| !self.attrs.iter().any(|a| a.name == k))
            {
                return Err(format!(
                    "Attribute [{name}] is not expected in <{}>.",
                    self.root
                ));
            }
            if element.children.is_empty() && !element.text.trim().is_empty() {
                return Err(format!("Element <{}> must not contain text.", self.root));
            }
        }
        self.check_sequence(element)
    }

    fn unexpected(&self, name: &str) -> String {
        if let Some((_, hint)) = self.refused.iter().find(|(n, _)| *n == name) {
            return format!(
                "Element <{name}> is not expected in <{}>: {hint}",
                self.root
            );
        }
        match self
            .fields
            .iter()
            .find(|f| f.name.eq_ignore_ascii_case(name))
        {
            Some(f) => format!(
                "Element <{name}> is not expected in <{}>: element names are case-sensitive, did you mean <{}>?",
                self.root, f.name
            ),
            None => format!("Element <{name}> is not expected in <{}>.", self.root),
        }
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
                return Err(self.unexpected(&child.name));
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
        self.fill_from_json(&mut root, object, true, self.strict_json)?;
        self.check_element(&root, true)?;
        Ok(root)
    }

    /// JSON properties become attributes or children (EM's JSON does not tell them apart).
    /// `strict` is the document's: nested elements follow their root.
    fn fill_from_json(
        &self,
        element: &mut Element,
        object: &serde_json::Map<String, serde_json::Value>,
        root: bool,
        strict: bool,
    ) -> Result<(), String> {
        for (key, value) in object {
            if let Some(attr) = self.attrs.iter().find(|a| a.name.eq_ignore_ascii_case(key)) {
                if !value.is_null() {
                    let text = json_text(attr, value, strict)?;
                    element.attrs.push((attr.name.to_string(), text));
                }
                continue;
            }
            let field = self
                .fields
                .iter()
                .find(|f| f.name.eq_ignore_ascii_case(key));
            let Some(field) = field else {
                if let Some((_, hint)) = self
                    .refused
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case(key))
                {
                    return Err(format!(
                        "Property [{key}] is not expected in {}: {hint}",
                        self.root
                    ));
                }
                if root
                    && ["name", "uid", "href", "type", "links"]
                        .iter()
                        .any(|k| k.eq_ignore_ascii_case(key))
                {
                    if key.eq_ignore_ascii_case("name") && !value.is_null() {
                        element.attrs.push(("Name".into(), json_scalar(value)?));
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
            element.children.push(json_element(field, value, strict)?);
        }
        element.children.sort_by_key(|c| {
            self.fields
                .iter()
                .position(|f| f.name == c.name)
                .unwrap_or(usize::MAX)
        });
        Ok(())
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

/// A scalar property's text. Strict: the JSON type must be the element's. The messages never
/// repeat the value (it may be a password).
fn json_text(field: &Field, value: &serde_json::Value, strict: bool) -> Result<String, String> {
    use serde_json::Value;
    if !strict {
        return json_scalar(value);
    }
    let name = field.name;
    match (field.kind, value) {
        (Kind::Bool, Value::Bool(b)) => Ok(b.to_string()),
        (Kind::Bool, _) => Err(format!("Property [{name}] must be a JSON boolean.")),
        (Kind::Int { .. } | Kind::Port, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(n.to_string())
        }
        (Kind::Int { .. } | Kind::Port, _) => {
            Err(format!("Property [{name}] must be a JSON integer."))
        }
        (_, Value::String(s)) => Ok(s.clone()),
        _ => Err(format!("Property [{name}] must be a JSON string.")),
    }
}

fn json_element(field: &Field, value: &serde_json::Value, strict: bool) -> Result<Element, String> {
    let mut element = Element {
        name: field.name.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        ..Element::default()
    };
    match field.kind {
        Kind::UidList { item, .. } => {
            for v in json_items(value, item) {
                let text = if strict {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("Items of [{}] must be JSON strings.", field.name))?
                } else {
                    json_scalar(v)?
                };
                element.children.push(Element {
                    name: item.to_string(),
                    namespace: Some(NAMESPACE.to_string()),
                    text,
                    ..Element::default()
                });
            }
        }
        Kind::List { item, .. } => {
            for v in json_items(value, item.root) {
                let object = v
                    .as_object()
                    .ok_or_else(|| format!("Items of [{}] must be JSON objects.", field.name))?;
                let mut child = Element {
                    name: item.root.to_string(),
                    namespace: Some(NAMESPACE.to_string()),
                    ..Element::default()
                };
                item.fill_from_json(&mut child, object, false, strict)?;
                element.children.push(child);
            }
        }
        Kind::Nested(schema) => {
            let object = value
                .as_object()
                .ok_or_else(|| format!("Property [{}] must be a JSON object.", field.name))?;
            schema.fill_from_json(&mut element, object, false, strict)?;
        }
        Kind::Any => element = json_any(field.name, value),
        _ => element.text = json_text(field, value, strict)?,
    }
    Ok(element)
}

/// The items of a JSON list wrapper: EM's `{"<Item>s": [...]}`, `{"<Item>": ...}`, or a bare
/// array or value.
fn json_items<'v>(value: &'v serde_json::Value, item: &str) -> Vec<&'v serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| {
                k.eq_ignore_ascii_case(item) || k.eq_ignore_ascii_case(&format!("{item}s"))
            })
            .flat_map(|(_, v)| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                Value::Null => Vec::new(),
                other => vec![other],
            })
            .collect(),
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

/// Any JSON as an element tree, so that "was there anything in it" can be asked of it.
fn json_any(name: &str, value: &serde_json::Value) -> Element {
    use serde_json::Value;
    let mut element = Element {
        name: name.to_string(),
        namespace: Some(NAMESPACE.to_string()),
        ..Element::default()
    };
    match value {
        Value::Null => {}
        Value::Object(map) => {
            element.children = map.iter().map(|(k, v)| json_any(k, v)).collect();
        }
        Value::Array(items) => {
            element.children = items.iter().map(|v| json_any(name, v)).collect();
        }
        Value::String(s) => element.text = s.clone(),
        other => element.text = other.to_string(),
    }
    element
}

fn check_value(field: &Field, element: &Element) -> Result<(), String> {
    match field.kind {
        Kind::Any => Ok(()),
        Kind::Nested(schema) => schema.check_element(element, false),
        Kind::List { item, min } => {
            if element.children.len() < min {
                return Err(format!(
                    "Element <{}> must contain at least {min} <{}>.",
                    field.name, item.root
                ));
            }
            for child in &element.children {
                if child.name != item.root {
                    return Err(format!(
                        "Element <{}> is not expected in <{}>.",
                        child.name, field.name
                    ));
                }
                if child.namespace.as_deref() != Some(NAMESPACE) {
                    return Err(format!(
                        "Element <{}> must be in the namespace {NAMESPACE}.",
                        child.name
                    ));
                }
                item.check_element(child, false)?;
            }
            Ok(())
        }
        Kind::UidList {
            item,
            uid_type,
            min,
            unique,
        } => {
            if element.children.len() < min {
                return Err(format!(
                    "Element <{}> must contain at least {min} <{item}>.",
                    field.name
                ));
            }
            let mut seen = std::collections::HashSet::new();
            for child in &element.children {
                if child.name != item {
                    return Err(format!(
                        "Element <{}> is not expected in <{}>.",
                        child.name, field.name
                    ));
                }
                check_uid(item, uid_type, &child.text)?;
                if unique && !seen.insert(parse_uid(uid_type, &child.text)) {
                    return Err(format!(
                        "<{item}> [{}] is listed twice in <{}>.",
                        child.text, field.name
                    ));
                }
            }
            Ok(())
        }
        _ if !element.children.is_empty() => Err(format!(
            "Element <{}> must not contain elements.",
            field.name
        )),
        kind => check_text(field.name, "element", kind, &element.text),
    }
}

/// A scalar value of an element or attribute (`what`).
fn check_text(name: &str, what: &str, kind: Kind, text: &str) -> Result<(), String> {
    let bad = |expected: &str| {
        Err(format!(
            "The value [{text}] of {what} <{name}> is not {expected}."
        ))
    };
    match kind {
        Kind::Any | Kind::Text | Kind::Secret => Ok(()),
        Kind::Name if text.trim().is_empty() => Err(format!("Element <{name}> must not be empty.")),
        Kind::Name => Ok(()),
        Kind::Bool => match text {
            "true" | "false" | "1" | "0" => Ok(()),
            _ => bad("a boolean"),
        },
        Kind::Port => match text.trim().parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(()),
            _ => bad("a port number between 1 and 65535"),
        },
        Kind::Int { min, max } => match text.trim().parse::<i64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(()),
            _ if max == i64::MAX => bad(&format!("a whole number of at least {min}")),
            _ => bad(&format!("a whole number from {min} to {max}")),
        },
        Kind::DateTime => match parse_datetime(text) {
            Some(_) => Ok(()),
            None => bad("an xs:dateTime such as 2099-12-31T00:00:00Z"),
        },
        Kind::Enum(values) if values.contains(&text) => Ok(()),
        Kind::Enum(values) => bad(&format!("one of {}", values.join(", "))),
        Kind::EnumAnyCase(values) if values.iter().any(|v| v.eq_ignore_ascii_case(text)) => Ok(()),
        Kind::EnumAnyCase(values) => bad(&format!("one of {}", values.join(", "))),
        Kind::Check(rule) => rule(text),
        Kind::Uid(uid_type) => check_uid(name, uid_type, text),
        Kind::UidOrEmpty(_) if text.trim().is_empty() => Ok(()),
        Kind::UidOrEmpty(uid_type) => check_uid(name, uid_type, text.trim()),
        Kind::Guid => match uuid::Uuid::parse_str(text.trim()) {
            Ok(_) if text.trim().len() == 36 => Ok(()),
            _ => bad("a guid"),
        },
        Kind::UidList { .. } | Kind::Nested(_) | Kind::List { .. } => {
            Err(format!("Element <{name}> must contain elements."))
        }
    }
}

/// An `xs:dateTime`: with an offset, or without one (then UTC, as the simulator decides).
pub fn parse_datetime(text: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let text = text.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(text) {
        return Some(at.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|at| at.and_utc())
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

    const SPEC: Schema = Schema::new(
        "Spec",
        &[
            required("A", Kind::Name),
            optional("B", Kind::Port),
            required("C", Kind::Enum(&["Direct", "NAT"])),
        ],
    );

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

    const QUOTA: Schema = Schema::new(
        "Quota",
        &[
            required(
                "Size",
                Kind::Int {
                    min: 1024,
                    max: i64::MAX,
                },
            ),
            optional("Wan", Kind::UidOrEmpty("WanAccelerator")),
        ],
    )
    .attrs(&[required("Id", Kind::Guid), optional("Href", Kind::Any)])
    .refusing(&[("SizeMb", "use <Size>.")]);

    const LEASE: Schema = Schema::new("Lease", &[]).attrs(&[
        required("Enabled", Kind::Bool),
        optional("ExpirationDate", Kind::DateTime),
    ]);

    const OUTER: Schema = Schema::new(
        "Outer",
        &[
            optional("Secret", Kind::Secret),
            optional("Lease", Kind::Nested(&LEASE)),
            optional(
                "Quotas",
                Kind::List {
                    item: &QUOTA,
                    min: 0,
                },
            ),
            optional("Count", Kind::Int { min: 1, max: 10 }),
            optional("On", Kind::Bool),
            optional(
                "Pools",
                Kind::UidList {
                    item: "PoolUid",
                    uid_type: "Pool",
                    min: 1,
                    unique: true,
                },
            ),
            optional("Extra", Kind::Any),
        ],
    )
    .refusing(&[("Offline", "EM spells it <On>.")])
    .strict_json();

    const G1: &str = "29e5d158-1f58-44bc-bbaa-2752d787a91d";

    fn outer(inner: &str) -> Result<(), String> {
        OUTER.check_xml(&parse_xml(&format!(
            r#"<Outer xmlns="{NAMESPACE}">{inner}</Outer>"#
        ))?)
    }

    #[test]
    fn nested_elements_attributes_and_lists_are_checked_in_depth() {
        outer(&format!(
            r#"<Secret>pw</Secret><Lease Enabled="true" ExpirationDate="2099-12-31T00:00:00"/><Quotas><Quota Id="{G1}" Href="x"><Size>1024</Size><Wan/></Quota></Quotas><Count>10</Count><Pools><PoolUid>urn:veeam:Pool:{G1}</PoolUid></Pools><Extra><Any>thing</Any></Extra>"#
        ))
        .unwrap();
        let cases = [
            (
                r#"<Lease/>"#.to_string(),
                "Attribute [Enabled] is missing in <Lease>",
            ),
            (
                r#"<Lease Enabled="yes"/>"#.into(),
                "of attribute <Enabled> is not a boolean",
            ),
            (
                r#"<Lease Enabled="true" ExpirationDate="31.12.2099"/>"#.into(),
                "is not an xs:dateTime",
            ),
            (
                r#"<Lease Enabled="true" Colour="red"/>"#.into(),
                "Attribute [Colour] is not expected in <Lease>",
            ),
            (
                r#"<Lease Enabled="true">text</Lease>"#.into(),
                "must not contain text",
            ),
            (
                r#"<Quotas><Quota><Size>2048</Size></Quota></Quotas>"#.into(),
                "Attribute [Id] is missing",
            ),
            (
                format!(r#"<Quotas><Quota Id="{G1}"><Size>1023</Size></Quota></Quotas>"#),
                "<Size> is not a whole number of at least 1024",
            ),
            (
                format!(r#"<Quotas><Quota Id="{G1}"><SizeMb>2048</SizeMb></Quota></Quotas>"#),
                "<SizeMb> is not expected in <Quota>: use <Size>.",
            ),
            (
                format!(
                    r#"<Quotas><Quota Id="{G1}"><Wan>nope</Wan><Size>2048</Size></Quota></Quotas>"#
                ),
                "<Size> is out of order",
            ),
            (
                format!(r#"<Quotas><Quota Id="{G1}"/></Quotas>"#),
                "<Size> is missing in <Quota>",
            ),
            (
                r#"<Quotas><Other/></Quotas>"#.into(),
                "<Other> is not expected in <Quotas>",
            ),
            (r#"<Count>11</Count>"#.into(), "a whole number from 1 to 10"),
            (r#"<Count><X/></Count>"#.into(), "must not contain elements"),
            (r#"<Pools/>"#.into(), "at least 1 <PoolUid>"),
            (
                format!(
                    r#"<Pools><PoolUid>urn:veeam:Pool:{G1}</PoolUid><PoolUid>{G1}</PoolUid></Pools>"#
                ),
                "is listed twice in <Pools>",
            ),
            (
                r#"<Offline>true</Offline>"#.into(),
                "<Offline> is not expected in <Outer>: EM spells it <On>.",
            ),
            (
                r#"<count>2</count>"#.into(),
                "element names are case-sensitive, did you mean <Count>?",
            ),
        ];
        for (inner, expected) in cases {
            let err = outer(&inner).unwrap_err();
            assert!(err.contains(expected), "{inner}: {err}");
        }
    }

    #[test]
    fn strict_json_wants_json_types_and_never_repeats_a_value() {
        let ok = serde_json::json!({
            "secret": "pw", "Lease": {"enabled": true, "ExpirationDate": "2099-12-31T00:00:00Z"},
            "Quotas": {"Quotas": [{"Id": G1, "Size": 2048, "Wan": ""}]},
            "Count": 2, "On": false, "Pools": {"PoolUid": format!("urn:veeam:Pool:{G1}")},
            "Extra": {"Whatever": [1, 2]}
        });
        let root = OUTER.read_json(&ok).unwrap();
        let names: Vec<&str> = root.children.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            ["Secret", "Lease", "Quotas", "Count", "On", "Pools", "Extra"]
        );
        assert_eq!(root.child("Lease").unwrap().attr("Enabled"), Some("true"));
        assert_eq!(
            root.child("Quotas").unwrap().children[0].attr("Id"),
            Some(G1)
        );
        assert!(root.child("Extra").unwrap().has_content());
        let cases = [
            (
                serde_json::json!({"On": "true"}),
                "[On] must be a JSON boolean",
            ),
            (
                serde_json::json!({"Count": "2"}),
                "[Count] must be a JSON integer",
            ),
            (
                serde_json::json!({"Count": 2.5}),
                "[Count] must be a JSON integer",
            ),
            (
                serde_json::json!({"Secret": ["hunter2"]}),
                "[Secret] must be a JSON string",
            ),
            (
                serde_json::json!({"Lease": {"Enabled": "false"}}),
                "[Enabled] must be a JSON boolean",
            ),
            (
                serde_json::json!({"Lease": true}),
                "[Lease] must be a JSON object",
            ),
            (
                serde_json::json!({"Quotas": [{"Size": 2048}]}),
                "Attribute [Id] is missing",
            ),
            (
                serde_json::json!({"Quotas": [{"Id": G1, "SizeMb": 2048}]}),
                "[SizeMb] is not expected in Quota: use <Size>.",
            ),
            (serde_json::json!({"Offline": true}), "EM spells it <On>."),
            (
                serde_json::json!({"Nope": 1}),
                "Property [Nope] is not expected in Outer.",
            ),
        ];
        for (body, expected) in cases {
            let err = OUTER.read_json(&body).unwrap_err();
            assert!(err.contains(expected), "{body}: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
        assert_eq!(
            OUTER
                .read_json(&serde_json::json!({"Secret": null, "Extra": null}))
                .unwrap()
                .children
                .len(),
            0,
            "null is absent"
        );
    }

    #[test]
    fn xml_errors_inside_a_password_do_not_repeat_it() {
        for body in [
            "<Spec><Password>ab&hunter2;cd</Password></Spec>",
            "<Spec><Password>ab&#xZZhunter2;</Password></Spec>",
        ] {
            let err = parse_xml(body).unwrap_err();
            assert!(!err.contains("hunter2"), "{err}");
        }
        let err = parse_xml("<Spec><Name>&hunter2;</Name></Spec>").unwrap_err();
        assert!(
            err.contains("hunter2"),
            "elsewhere the entity is named: {err}"
        );
    }

    #[test]
    fn datetimes_without_an_offset_are_utc() {
        let plain = parse_datetime("2099-12-31T00:00:00").unwrap();
        assert_eq!(plain, parse_datetime("2099-12-31T01:00:00+01:00").unwrap());
        assert_eq!(plain, parse_datetime("2099-12-31T00:00:00.000Z").unwrap());
        assert!(parse_datetime("2099-12-31").is_none());
        assert!(parse_datetime("tomorrow").is_none());
    }
}
