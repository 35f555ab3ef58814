//! The writer's transactions, with each statement prepared once per connection: a
//! statement sent as text costs a round trip of its own (Parse and Describe) before it
//! runs, and the writer sends the same dozen statements for every group of batches.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Row, Statement, Transaction};

/// The statements prepared on one connection, by their text. Prepared statements belong to
/// the session, not to a transaction: one prepared in a transaction that rolls back stays.
#[derive(Default)]
pub(super) struct Prepared(HashMap<&'static str, Statement>);

/// A transaction of the writer's connection that runs statements through [`Prepared`].
pub(super) struct Tx<'a> {
    tx: Transaction<'a>,
    prepared: &'a mut Prepared,
}

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

impl<'a> Tx<'a> {
    pub(super) fn new(tx: Transaction<'a>, prepared: &'a mut Prepared) -> Tx<'a> {
        Tx { tx, prepared }
    }

    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.prepared.0.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql)?;
        self.prepared.0.insert(sql, s.clone());
        Ok(s)
    }

    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.execute(&s, params)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query(&s, params)
    }

    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: Params,
    ) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.query_one(&s, params)
    }

    pub(super) fn commit(self) -> Result<(), postgres::Error> {
        self.tx.commit()
    }
}
