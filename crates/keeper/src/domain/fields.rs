//! What is wrong with a request's fields: each field with the sentences a person can
//! act on, answered as one 400 (`fields` in the error body).

use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct FieldProblems(pub BTreeMap<String, Vec<String>>);

impl FieldProblems {
    pub fn add(&mut self, field: &str, problem: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(problem.into());
    }

    /// `Ok` when nothing was found, else `invalid` of the problems.
    pub fn into_result<E>(
        self,
        invalid: impl FnOnce(BTreeMap<String, Vec<String>>) -> E,
    ) -> Result<(), E> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(invalid(self.0))
        }
    }

    /// One problem with one field.
    pub fn one(field: &str, problem: impl Into<String>) -> BTreeMap<String, Vec<String>> {
        let mut p = FieldProblems::default();
        p.add(field, problem);
        p.0
    }
}
