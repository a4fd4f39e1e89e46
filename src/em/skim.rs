//! Skimming a session's `<Tasks>` list for the few tasks that finished.
//!
//! A session's list holds every task EM still keeps for it, 25,000 when busy (10 MB and more),
//! and the poller reads every session's list every interval. Only the tasks that finished since
//! the last look are wanted whole; the others are passed over for their id and state. The list
//! is read as it arrives, holding the chunk being read and the task being read, never the list.
//!
//! The list is read at the level of its markup: each tag is found with `memchr` and only the
//! names of the list's own elements and a task's `TaskId` and `State` are looked at. Reading
//! every element as an event (quick-xml's reader, its bytes copied twice) was 43 % of the
//! gateway's CPU while 100,000 tasks finished. A task that is wanted is built by quick-xml, as
//! any other document.
//!
//! The root must be `<Tasks>` (an HTML page or any other answer is an error, not an empty list),
//! a list cut short is an error, and a state EM adds later is simply not finished. Comments,
//! processing instructions, CDATA sections and a DOCTYPE are stepped over wherever they are.

use memchr::{memchr, memchr3, memmem};

use super::xml::{Document, Task, Tasks};

/// The most held between chunks: a task, or markup not yet whole, larger than this is not a
/// task list EM writes (its tasks are under a kilobyte).
const MAX_HELD: usize = 64 << 20;

/// Why [`finished_tasks_streamed`] found nothing: the body could not be read (`E`, the
/// transport's error), or what was read is not a whole task list.
#[derive(Debug)]
pub enum SkimError<E> {
    Read(E),
    Document(quick_xml::DeError),
}

/// The finished tasks among those `wanted` in a `<Tasks>` list held whole.
pub fn finished_tasks(
    text: &str,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Task>, quick_xml::DeError> {
    let mut skim = Skim::new(wanted);
    match skim.feed(text.as_bytes())? {
        Some(found) => Ok(found),
        None => skim.end(),
    }
}

/// The finished tasks among those `wanted` in a `<Tasks>` list, read chunk by chunk as EM sends
/// it (see the module's documentation). What follows the list's end is not read.
pub async fn finished_tasks_streamed<S, B, E>(
    mut chunks: S,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<Task>, SkimError<E>>
where
    S: futures_util::Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
{
    use futures_util::StreamExt;
    let mut skim = Skim::new(wanted);
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(SkimError::Read)?;
        if let Some(found) = skim.feed(chunk.as_ref()).map_err(SkimError::Document)? {
            return Ok(found);
        }
    }
    skim.end().map_err(SkimError::Document)
}

/// A skim under way: what has arrived and not been read through, and where in the list it is.
pub struct Skim<W> {
    wanted: W,
    /// Bytes arrived and still needed: from the task being read (or the markup not yet whole)
    /// to the last byte arrived. Positions below are indexes into it.
    held: Vec<u8>,
    /// Where reading goes on.
    at: usize,
    /// Reading goes on once `held` is this long: markup not yet whole is read again from its
    /// start only when what is held of it has doubled, so a long one arriving in small chunks
    /// costs its length a few times over, not its length times its chunks.
    read_at: usize,
    /// Elements open: 0 before the root, 1 inside `<Tasks>`, 2 inside a task.
    depth: usize,
    task: Option<TaskRead>,
    /// The `TaskId` or `State` being read: which, and where its content starts.
    field: Option<(Field, usize)>,
    found: Vec<Task>,
}

/// The task being read: where its element starts, its id (where it is, trimmed), whether it
/// has finished.
struct TaskRead {
    start: usize,
    id: Option<(usize, usize)>,
    finished: bool,
}

/// Which of a task's fields is being read.
#[derive(Debug, Clone, Copy)]
enum Field {
    Id,
    State,
}

/// One piece of markup, whole.
enum Markup<'a> {
    /// A start tag (`empty` if it closes itself), by the local part of its name.
    Start {
        name: &'a [u8],
        empty: bool,
    },
    End,
    /// A comment, processing instruction, CDATA section or DOCTYPE.
    Other,
}

impl<W: Fn(&str) -> bool> Skim<W> {
    pub fn new(wanted: W) -> Self {
        Skim {
            wanted,
            held: Vec::new(),
            at: 0,
            read_at: 0,
            depth: 0,
            task: None,
            field: None,
            found: Vec::new(),
        }
    }

    /// Bytes held between chunks: the task being read and the markup not yet whole.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Reads one more chunk. Answers the tasks found once the list has ended.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Option<Vec<Task>>, quick_xml::DeError> {
        self.held.extend_from_slice(chunk);
        if self.held.len() > MAX_HELD {
            return Err(bad(&format!(
                "a task or markup in the task list is over {} MiB",
                MAX_HELD >> 20
            )));
        }
        if self.held.len() < self.read_at {
            return Ok(None);
        }
        self.read()
    }

    /// The body ended: what is held is read through, and the list must have ended in it.
    pub fn end(mut self) -> Result<Vec<Task>, quick_xml::DeError> {
        if let Some(found) = self.read()? {
            return Ok(found);
        }
        Err(if self.depth == 0 {
            not_a_list("no XML")
        } else {
            bad(&"the task list ends early")
        })
    }

    /// Reads what is held as far as it is whole.
    fn read(&mut self) -> Result<Option<Vec<Task>>, quick_xml::DeError> {
        self.read_at = 0;
        loop {
            let Some(open) = memchr(b'<', &self.held[self.at..]).map(|i| self.at + i) else {
                // Text to the end: nothing in it is needed but a field's, kept with its task.
                self.at = self.held.len();
                break;
            };
            let Some((markup, next)) = markup(&self.held, open) else {
                // Not all of it has arrived: read it again whole, once it may have.
                self.at = open;
                self.read_at = self.held.len() + (self.held.len() - open);
                break;
            };
            self.at = next;
            match markup {
                Markup::Other => {}
                Markup::Start { name, empty: true } if self.depth == 0 => {
                    return if name == Tasks::ROOT.as_bytes() {
                        Ok(Some(std::mem::take(&mut self.found)))
                    } else {
                        Err(not_a_list(&format!("<{}>", String::from_utf8_lossy(name))))
                    };
                }
                Markup::Start { empty: true, .. } => {}
                Markup::Start { name, empty: false } => {
                    match (self.depth, name) {
                        (0, root) if root != Tasks::ROOT.as_bytes() => {
                            return Err(not_a_list(&format!(
                                "<{}>",
                                String::from_utf8_lossy(root)
                            )));
                        }
                        (1, b"Task") => {
                            self.task = Some(TaskRead {
                                start: open,
                                id: None,
                                finished: false,
                            })
                        }
                        (2, b"TaskId") if self.task.is_some() => {
                            self.field = Some((Field::Id, next))
                        }
                        (2, b"State") if self.task.is_some() => {
                            self.field = Some((Field::State, next))
                        }
                        _ => {}
                    }
                    self.depth += 1;
                }
                Markup::End if self.depth == 0 => return Err(not_a_list("an end tag")),
                Markup::End => {
                    self.depth -= 1;
                    match self.depth {
                        0 => return Ok(Some(std::mem::take(&mut self.found))),
                        1 => {
                            self.field = None;
                            if let Some(task) = self.task.take() {
                                self.task_read(task, next)?;
                            }
                        }
                        2 => {
                            if let (Some((which, from)), Some(task)) =
                                (self.field.take(), self.task.as_mut())
                            {
                                // The element's content as written, trimmed.
                                let (from, to) = trimmed(&self.held, from, open);
                                match which {
                                    Field::Id => task.id = Some((from, to)),
                                    Field::State => {
                                        task.finished = &self.held[from..to] == b"Finished"
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.forget_read();
        Ok(None)
    }

    /// A task read through to its end tag (which ends before `end`): built if it finished and
    /// is wanted.
    fn task_read(&mut self, task: TaskRead, end: usize) -> Result<(), quick_xml::DeError> {
        let (true, Some((from, to))) = (task.finished, task.id) else {
            return Ok(());
        };
        let id = text(&self.held[from..to])?;
        if !(self.wanted)(id) {
            return Ok(());
        }
        let element = text(&self.held[task.start..end])?;
        self.found.push(quick_xml::de::from_str::<Task>(element)?);
        Ok(())
    }

    /// Lets go of what is read: all but the task being read, or the markup not yet whole.
    fn forget_read(&mut self) {
        let keep_from = self.task.as_ref().map_or(self.at, |t| t.start.min(self.at));
        if keep_from == 0 {
            return;
        }
        self.held.drain(..keep_from);
        self.at -= keep_from;
        self.read_at = self.read_at.saturating_sub(keep_from);
        if let Some(task) = self.task.as_mut() {
            task.start -= keep_from;
            if let Some((from, to)) = task.id.as_mut() {
                *from -= keep_from;
                *to -= keep_from;
            }
        }
        if let Some((_, from)) = self.field.as_mut() {
            *from -= keep_from;
        }
    }
}

/// The markup that starts at `held[open]` (a `<`), and where it ends (just after its `>`); none
/// if not all of it has arrived.
fn markup(held: &[u8], open: usize) -> Option<(Markup<'_>, usize)> {
    let rest = &held[open..];
    let after = |from: usize, end: &[u8]| {
        memmem::find(rest.get(from..)?, end).map(|i| open + from + i + end.len())
    };
    match rest.get(1)? {
        b'/' => Some((Markup::End, open + memchr(b'>', rest)? + 1)),
        b'?' => Some((Markup::Other, after(2, b"?>")?)),
        b'!' => {
            let kind = rest.get(..4)?;
            if kind == b"<!--" {
                return Some((Markup::Other, after(4, b"-->")?));
            }
            if b"<![CDATA[".starts_with(rest.get(..9).unwrap_or(rest)) {
                // Needs all nine bytes to be told from a DOCTYPE.
                rest.get(..9)?;
                return Some((Markup::Other, after(9, b"]]>")?));
            }
            // A DOCTYPE, its internal subset in brackets.
            let mut brackets = 0usize;
            for (i, b) in rest.iter().enumerate().skip(2) {
                match b {
                    b'[' => brackets += 1,
                    b']' => brackets = brackets.saturating_sub(1),
                    b'>' if brackets == 0 => return Some((Markup::Other, open + i + 1)),
                    _ => {}
                }
            }
            None
        }
        _ => {
            // A start tag: its end is the first `>` outside a quoted attribute value.
            let mut i = 1;
            let close = loop {
                let at = i + memchr3(b'>', b'"', b'\'', &rest[i..])?;
                match rest[at] {
                    b'>' => break at,
                    quote => i = at + 1 + memchr(quote, &rest[at + 1..])? + 1,
                }
            };
            let name_end = rest[1..close]
                .iter()
                .position(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | b'/'))
                .map_or(close, |n| n + 1);
            let name = &rest[1..name_end];
            let local = match memchr::memrchr(b':', name) {
                Some(colon) => &name[colon + 1..],
                None => name,
            };
            let empty = rest[close - 1] == b'/';
            Some((Markup::Start { name: local, empty }, open + close + 1))
        }
    }
}

/// `held[from..to]` without the whitespace around it.
fn trimmed(held: &[u8], mut from: usize, mut to: usize) -> (usize, usize) {
    while from < to && held[from].is_ascii_whitespace() {
        from += 1;
    }
    while to > from && held[to - 1].is_ascii_whitespace() {
        to -= 1;
    }
    (from, to)
}

fn text(bytes: &[u8]) -> Result<&str, quick_xml::DeError> {
    std::str::from_utf8(bytes).map_err(|e| bad(&format!("the task list is not UTF-8: {e}")))
}

fn bad(e: &dyn std::fmt::Display) -> quick_xml::DeError {
    quick_xml::DeError::Custom(e.to_string())
}

fn not_a_list(got: &str) -> quick_xml::DeError {
    quick_xml::DeError::Custom(format!("expected a <{}> document, got {got}", Tasks::ROOT))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::em::xml::{from_xml, id_of};

    #[test]
    fn a_task_list_is_skimmed_for_the_finished_tasks_wanted() {
        let task = |id: &str, state: &str| {
            format!(
                r#"<Task Href="https://em/api/tasks/{id}" Type="Task"><Links><Link Href="https://em/api/cloud/gateways/{id}-gw?format=Entity" Type="CloudGateway" Rel="Related"/></Links><TaskId>{id}</TaskId><State>{state}</State><Operation>CreateCloudGateway</Operation><Result Success="true"><Message>Ok &amp; done</Message></Result></Task>"#
            )
        };
        let list = format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<Tasks xmlns=\"http://www.veeam.com/ent/v1.0\">\n  {}\n  {}\n  {}\n  {}\n</Tasks>",
            task("task-1", "Running"),
            task("task-2", "Finished"),
            task("task-3", "Finished"),
            task("task-4", "OperationFinished"),
        );
        let skimmed = finished_tasks(&list, |id| id != "task-3").unwrap();
        let whole: Tasks = from_xml(&list).unwrap();
        assert_eq!(
            skimmed,
            vec![whole.tasks[1].clone()],
            "as the whole parse reads it"
        );
        assert_eq!(
            skimmed[0].result.as_ref().unwrap().message.as_deref(),
            Some("Ok & done")
        );
        assert_eq!(
            id_of(&skimmed[0].links.find("Related", None).unwrap().href),
            "task-2-gw"
        );
        assert!(finished_tasks(&list, |_| false).unwrap().is_empty());
        assert!(
            finished_tasks(r#"<Tasks xmlns="x"/>"#, |_| true)
                .unwrap()
                .is_empty()
        );
        assert!(
            finished_tasks("<Tasks></Tasks>", |_| true)
                .unwrap()
                .is_empty()
        );
        let html = finished_tasks("<html><body>busy</body></html>", |_| true).unwrap_err();
        assert!(
            html.to_string()
                .contains("expected a <Tasks> document, got <html>"),
            "{html}"
        );
        assert!(finished_tasks("not xml at all", |_| true).is_err());
        assert!(
            finished_tasks(&list[..list.len() / 2], |_| true).is_err(),
            "cut short"
        );
    }

    /// A task list of four tasks, one of each kind the skim tells apart.
    fn four_task_list() -> String {
        let task = |id: &str, state: &str| {
            format!(
                r#"<Task Href="https://em/api/tasks/{id}" Type="Task"><Links><Link Href="https://em/api/cloud/gateways/{id}-gw?format=Entity" Type="CloudGateway" Rel="Related"/></Links><TaskId>{id}</TaskId><State>{state}</State><Operation>CreateCloudGateway</Operation><Result Success="true"><Message>Ok &amp; done <![CDATA[<b>]]></Message></Result></Task>"#
            )
        };
        format!(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<!-- EM --><Tasks xmlns=\"http://www.veeam.com/ent/v1.0\">\n  {}\n  {}\n  {}\n  {}\n</Tasks>\n",
            task("task-1", "Running"),
            task("task-2", "Finished"),
            task("task-3", "Finished"),
            task("task-4", "Queued"),
        )
    }

    /// A body whose chunks arrive one poll apart, as a socket's do.
    struct Arriving<I> {
        chunks: I,
        waited: bool,
    }

    impl<I: Iterator<Item = Result<Vec<u8>, &'static str>> + Unpin> futures_util::Stream
        for Arriving<I>
    {
        type Item = Result<Vec<u8>, &'static str>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            if !self.waited {
                self.waited = true;
                cx.waker().wake_by_ref();
                return std::task::Poll::Pending;
            }
            self.waited = false;
            std::task::Poll::Ready(self.chunks.next())
        }
    }

    async fn skim(
        chunks: Vec<Result<Vec<u8>, &'static str>>,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<Task>, SkimError<&'static str>> {
        let arriving = Arriving {
            chunks: chunks.into_iter(),
            waited: false,
        };
        finished_tasks_streamed(arriving, wanted).await
    }

    fn split_at(text: &[u8], cuts: &[usize]) -> Vec<Result<Vec<u8>, &'static str>> {
        let mut chunks = Vec::new();
        let mut from = 0;
        for &cut in cuts.iter().chain([text.len()].iter()) {
            chunks.push(Ok(text[from..cut].to_vec()));
            from = cut;
        }
        chunks
    }

    #[tokio::test]
    async fn a_task_list_read_in_chunks_gives_what_the_whole_list_gives() {
        let list = four_task_list();
        let with_bom = format!("\u{feff}{list}");
        let whole: Tasks = from_xml(&list).unwrap();
        let expected = vec![whole.tasks[1].clone()];
        assert_eq!(expected[0].task_id, "task-2");
        assert_eq!(
            expected[0].result.as_ref().unwrap().message.as_deref(),
            Some("Ok & done <b>")
        );
        let wanted = |id: &str| id != "task-3";
        for text in [list.as_bytes(), with_bom.as_bytes()] {
            // Two chunks, cut at every byte: inside tags, names, entities, the CDATA, the BOM.
            for cut in 0..=text.len() {
                let found = skim(split_at(text, &[cut]), wanted).await;
                assert_eq!(found.unwrap(), expected, "cut at {cut}");
            }
            // A byte a chunk, with empty chunks between.
            let bytes: Vec<_> = text
                .iter()
                .flat_map(|b| [Ok(vec![*b]), Ok(Vec::new())])
                .collect();
            assert_eq!(skim(bytes, wanted).await.unwrap(), expected, "byte by byte");
        }
        // The whole list in one chunk, as `finished_tasks` reads it.
        assert_eq!(finished_tasks(&list, wanted).unwrap(), expected);
    }

    #[tokio::test]
    async fn a_task_list_skims_as_its_rules_say() {
        let list = four_task_list();
        let everything = |_: &str| true;
        // (document, the ids built, or what the error says)
        let cases: [(&str, Result<&[&str], &str>); 14] = [
            (&list, Ok(&["task-2", "task-3"])),
            (r#"<Tasks xmlns="x"/>"#, Ok(&[])),
            ("<Tasks></Tasks>", Ok(&[])),
            (
                "<em:Tasks xmlns:em=\"x\"><em:Task><em:TaskId>t</em:TaskId><em:State>Finished</em:State><em:Operation>X</em:Operation></em:Task></em:Tasks>",
                Ok(&["t"]),
            ),
            // A task with no id, or no state, is not one the poller can settle.
            (
                "<Tasks><Task><State>Finished</State><Operation>X</Operation></Task></Tasks>",
                Ok(&[]),
            ),
            (
                "<Tasks><Task><TaskId>t</TaskId><Operation>X</Operation></Task></Tasks>",
                Ok(&[]),
            ),
            (
                "<html><body>busy</body></html>",
                Err("expected a <Tasks> document, got <html>"),
            ),
            ("<Error/>", Err("expected a <Tasks> document, got <Error>")),
            (
                "</html>",
                Err("expected a <Tasks> document, got an end tag"),
            ),
            (
                "Service unavailable</p>",
                Err("expected a <Tasks> document, got an end tag"),
            ),
            (
                "not xml at all",
                Err("expected a <Tasks> document, got no XML"),
            ),
            ("", Err("expected a <Tasks> document, got no XML")),
            ("<Tasks><Task><TaskId>t</TaskId>", Err("ends early")),
            ("<Tasks><Task></Tasks>", Err("")),
        ];
        // Id and state are compared as EM's text trimmed (the task itself is built as written).
        let padded = "<Tasks><Task><TaskId> t </TaskId><State>\n Finished </State><Operation>X</Operation></Task></Tasks>";
        let found = skim(split_at(padded.as_bytes(), &[20]), |id| id == "t").await;
        assert_eq!(found.unwrap()[0].task_id, " t ");
        for (document, expected) in cases {
            for cut in [0, document.len() / 3, document.len() / 2] {
                let found = skim(split_at(document.as_bytes(), &[cut]), everything).await;
                match (found, expected) {
                    (Ok(tasks), Ok(ids)) => {
                        let got: Vec<_> = tasks.iter().map(|t| t.task_id.as_str()).collect();
                        assert_eq!(got, ids, "{document}");
                    }
                    (Err(SkimError::Document(e)), Err(says)) => {
                        assert!(e.to_string().contains(says), "{document}: {e}");
                    }
                    (found, _) => panic!("{document}: {found:?}"),
                }
            }
        }
    }

    #[tokio::test]
    async fn a_task_list_cut_short_is_an_error_wherever_it_is_cut() {
        let list = four_task_list();
        let end = list.rfind("</Tasks>").unwrap() + "</Tasks>".len();
        for cut in 0..end {
            // The body ends early: a document error.
            let found = skim(split_at(&list.as_bytes()[..cut], &[cut / 2]), |_| true).await;
            assert!(
                matches!(found, Err(SkimError::Document(_))),
                "cut at {cut}: {found:?}"
            );
            // The connection fails: the transport's error, not the document's.
            let mut chunks = split_at(&list.as_bytes()[..cut], &[cut / 2]);
            chunks.push(Err("connection reset"));
            let found = skim(chunks, |_| true).await;
            assert!(
                matches!(found, Err(SkimError::Read("connection reset"))),
                "cut at {cut}: {found:?}"
            );
        }
        // What follows the list's end is not read.
        let mut chunks = split_at(&list.as_bytes()[..end], &[]);
        chunks.push(Err("connection reset"));
        assert_eq!(skim(chunks, |_| true).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn markup_that_looks_like_a_task_is_stepped_over_wherever_the_list_is_cut() {
        // `>` and quotes inside attribute values; `</Task>` and `<State>` inside a comment, a
        // CDATA section and a processing instruction; a DOCTYPE with an internal subset; a
        // nested `State` that is not the task's.
        let finished = concat!(
            "<Task><TaskId>t-2</TaskId><State>Finished</State><Operation>X</Operation>",
            "<Result Success=\"true\"><Message><![CDATA[</Task><State>Running</State>]]></Message>",
            "<?pi </Task> ?></Result></Task>",
        );
        let list = format!(
            "{}{}{}{}{}{}",
            "<?xml version=\"1.0\"?><!DOCTYPE Tasks [<!ENTITY e \"x>y\">]><Tasks a='x>\"y'>",
            "<Task Href=\"https://em/api/tasks/t-1?a=1>2\" Note='</Task>'><TaskId>t-1</TaskId>\
             <!-- <State>Finished</State></Task> --><State>Running</State><Operation>X</Operation></Task>",
            finished,
            "<Task><TaskId>t-3</TaskId><Result Success=\"true\"><State>Finished</State></Result>\
             <State>Running</State><Operation>X</Operation></Task>",
            "<Task/><Other><Task><TaskId>t-4</TaskId><State>Finished</State></Task></Other>",
            "</Tasks>",
        );
        let expected = vec![quick_xml::de::from_str::<Task>(finished).unwrap()];
        assert_eq!(
            expected[0].result.as_ref().unwrap().message.as_deref(),
            Some("</Task><State>Running</State>")
        );
        for cut in 0..=list.len() {
            let found = skim(split_at(list.as_bytes(), &[cut]), |_| true).await;
            assert_eq!(found.unwrap(), expected, "cut at {cut}");
        }
        assert_eq!(finished_tasks(&list, |_| true).unwrap(), expected);
    }

    #[test]
    fn markup_that_never_ends_is_read_a_few_times_and_not_held_past_a_limit() {
        // A quote never closed makes the rest of the body one start tag.
        let mut skim = Skim::new(|_: &str| true);
        assert!(skim.feed(b"<Tasks><Task Href=\"").unwrap().is_none());
        let chunk = [b'x'; 64];
        let mut reads = 0;
        let mut result = Ok(None);
        for _ in 0..(MAX_HELD / chunk.len() + 1) {
            let before = skim.read_at;
            result = skim.feed(&chunk);
            if skim.read_at != before {
                reads += 1;
            }
            if result.is_err() {
                break;
            }
        }
        let err = result.unwrap_err().to_string();
        assert!(err.contains("over 64 MiB"), "{err}");
        // Read again each time what is held has doubled: 64 MiB in 64-byte chunks, ~20 times.
        assert!(reads < 40, "read {reads} times");
    }

    #[test]
    fn a_task_list_skim_keeps_one_task_not_the_list() {
        let task = |i: usize| {
            format!(
                "<Task><TaskId>task-{i}</TaskId><State>Running</State><Operation>CreateCloudGateway</Operation></Task>"
            )
        };
        let tasks: String = (0..10_000).map(task).collect();
        let list = format!("<Tasks>{tasks}</Tasks>");
        let mut skim = Skim::new(|_: &str| true);
        let mut most = 0;
        for chunk in list.as_bytes().chunks(4096) {
            assert!(skim.feed(chunk).unwrap().is_none() || chunk.ends_with(b"</Tasks>"));
            most = most.max(skim.held());
        }
        assert!(list.len() > 900_000);
        // A chunk arrived, and the task it ended inside.
        assert!(most <= 4096 + task(9_999).len(), "held {most} bytes");
    }
}
