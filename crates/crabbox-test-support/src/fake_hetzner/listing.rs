//! The list endpoints' common parts: exact-match filters, `label_selector`, `sort`, and
//! `page`/`per_page` pagination with `meta.pagination`, as the reference's "Pagination" and
//! "Sorting" sections describe them (25 entries per page unless asked, at most 50).

use std::cmp::Ordering;

use serde_json::{Value, json};

use super::labels::Selector;
use super::{Answer, ApiError};

const DEFAULT_PER_PAGE: usize = 25;
const MAX_PER_PAGE: usize = 50;

/// A request's query string, decoded.
#[derive(Debug, Clone, Copy)]
pub(super) struct Query<'a>(pub &'a [(String, String)]);

impl<'a> Query<'a> {
    pub fn one(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a parameter that may be repeated (`status=running&status=off`).
    pub fn all(&self, key: &str) -> Vec<&'a str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// Keeps the items that match every filter given in the query: each `(parameter, field)` of
/// `filters` (repeated values: any of them) and `label_selector`.
pub(super) fn filter(
    items: &mut Vec<Value>,
    query: Query<'_>,
    filters: &[(&str, &str)],
) -> Result<(), ApiError> {
    for (param, field) in filters {
        let wanted = query.all(param);
        if !wanted.is_empty() {
            items.retain(|item| wanted.iter().any(|w| text(&item[field]) == *w));
        }
    }
    if let Some(selector) = query.one("label_selector").filter(|s| !s.trim().is_empty()) {
        let selector = Selector::parse(selector)?;
        items.retain(|item| selector.matches(&item["labels"]));
    }
    Ok(())
}

/// A JSON value as a query parameter would spell it.
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Sorts (by `sort`, else by id) and pages `items`, answering `{"<key>": [...], "meta": ...}`.
pub(super) fn page(mut items: Vec<Value>, key: &str, query: Query<'_>) -> Answer {
    sort(&mut items, query)?;
    let number = |name: &str, default: usize| match query.one(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::invalid_field(name, "must be a positive integer")),
    };
    let page = number("page", 1)?;
    let per_page = number("per_page", DEFAULT_PER_PAGE)?.min(MAX_PER_PAGE);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let entries: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(per_page))
        .take(per_page)
        .collect();
    let body = json!({
        key: entries,
        "meta": {"pagination": {
            "page": page,
            "per_page": per_page,
            "previous_page": (page > 1).then(|| page - 1),
            "next_page": (page < last).then(|| page + 1),
            "last_page": last,
            "total_entries": total,
        }},
    });
    Ok((200, body))
}

/// Applies `sort=field[:asc|:desc]` parameters (the first is the primary order); ids break
/// ties, as they are ascending in creation order.
fn sort(items: &mut [Value], query: Query<'_>) -> Result<(), ApiError> {
    let mut keys = Vec::new();
    for spec in query.all("sort") {
        let (field, dir) = spec.split_once(':').unwrap_or((spec, "asc"));
        let descending = match dir {
            "asc" => false,
            "desc" => true,
            _ => return Err(ApiError::invalid_field("sort", "unknown sort direction")),
        };
        if !["id", "name", "created"].contains(&field) {
            return Err(ApiError::invalid_field("sort", "unknown sort field"));
        }
        keys.push((field, descending));
    }
    keys.push(("id", false));
    items.sort_by(|a, b| {
        keys.iter()
            .map(|(field, descending)| {
                let order = compare(&a[field], &b[field]);
                if *descending { order.reverse() } else { order }
            })
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    });
    Ok(())
}

/// Numbers by value, strings by text (RFC 3339 times in one format sort as text), `null` first.
fn compare(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_u64().cmp(&y.as_u64()),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Less,
        (_, Value::Null) => Ordering::Greater,
        _ => a.to_string().cmp(&b.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn items(n: u64) -> Vec<Value> {
        (1..=n)
            .map(|id| json!({"id": id, "name": format!("s{:02}", 100 - id)}))
            .collect()
    }

    #[test]
    fn pages_carry_the_references_meta() {
        let q = query(&[("page", "2"), ("per_page", "2")]);
        let (_, body) = page(items(5), "servers", Query(&q)).unwrap();
        assert_eq!(body["servers"], json!([items(5)[2], items(5)[3]]));
        assert_eq!(
            body["meta"]["pagination"],
            json!({"page": 2, "per_page": 2, "previous_page": 1, "next_page": 3,
                   "last_page": 3, "total_entries": 5})
        );
        let (_, empty) = page(Vec::new(), "servers", Query(&[])).unwrap();
        assert_eq!(
            empty["meta"]["pagination"],
            json!({"page": 1, "per_page": 25, "previous_page": null, "next_page": null,
                   "last_page": 1, "total_entries": 0})
        );
        let q = query(&[("per_page", "500")]);
        let (_, capped) = page(items(60), "servers", Query(&q)).unwrap();
        assert_eq!(capped["servers"].as_array().unwrap().len(), 50);
        let q = query(&[("page", "0")]);
        assert!(page(items(1), "servers", Query(&q)).is_err());
    }

    #[test]
    fn sorts_by_the_fields_asked_then_by_id() {
        let q = query(&[("sort", "name:asc")]);
        let (_, body) = page(items(3), "servers", Query(&q)).unwrap();
        assert_eq!(body["servers"][0]["id"], 3);
        let q = query(&[("sort", "id:desc")]);
        let (_, body) = page(items(3), "servers", Query(&q)).unwrap();
        assert_eq!(body["servers"][0]["id"], 3);
        let q = query(&[("sort", "size")]);
        assert!(page(items(3), "servers", Query(&q)).is_err());
    }
}
