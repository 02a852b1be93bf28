//! Messages waiting for their recipients: written in batches by the delivery writer, read and
//! confirmed by `readlog`.

use super::{Store, StoreError};
use chat_proto::{ChatMessage, MessageId, Recipient, SharedMessage};
use std::sync::Arc;
use uuid::Uuid;

/// One message for one recipient, to be stored until the recipient confirms it.
pub struct InboxRow {
    pub recipient: Arc<str>,
    pub message: Arc<SharedMessage>,
}

/// A stored message that its recipient has acknowledged.
pub struct InboxDelete {
    pub recipient: String,
    pub id: MessageId,
}

impl Store {
    /// Stores `rows` and removes `deletes` in one transaction: one commit for the whole batch.
    /// A row whose (recipient, id) is already stored is skipped, so a retried send is stored once.
    pub async fn apply_inbox_batch(
        &self,
        rows: &[InboxRow],
        deletes: &[InboxDelete],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        if !rows.is_empty() {
            let recipients: Vec<&str> = rows.iter().map(|row| &*row.recipient).collect();
            let ids: Vec<Uuid> = rows.iter().map(|row| row.message.id.0).collect();
            let senders: Vec<&str> = rows.iter().map(|row| row.message.from.as_str()).collect();
            let groups: Vec<Option<&str>> = rows
                .iter()
                .map(|row| match &row.message.to {
                    Recipient::Group(group) => Some(group.as_str()),
                    Recipient::User(_) => None,
                })
                .collect();
            let bodies: Vec<&str> = rows.iter().map(|row| row.message.text.as_str()).collect();
            let sent_at: Vec<i64> = rows.iter().map(|row| row.message.sent_at_ms).collect();
            let insert = tx
                .prepare_cached(
                    "INSERT INTO inbox (recipient, msg_id, sender, group_name, body, sent_at_ms) \
                     SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::text[], $4::text[], \
                                          $5::text[], $6::bigint[]) \
                     ON CONFLICT DO NOTHING",
                )
                .await?;
            tx.execute(
                &insert,
                &[&recipients, &ids, &senders, &groups, &bodies, &sent_at],
            )
            .await?;
        }
        if !deletes.is_empty() {
            let recipients: Vec<&str> = deletes.iter().map(|del| del.recipient.as_str()).collect();
            let ids: Vec<Uuid> = deletes.iter().map(|del| del.id.0).collect();
            let delete = tx
                .prepare_cached(
                    "DELETE FROM inbox i USING UNNEST($1::text[], $2::uuid[]) AS d(recipient, id) \
                     WHERE i.recipient = d.recipient AND i.msg_id = d.id",
                )
                .await?;
            tx.execute(&delete, &[&recipients, &ids]).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` messages waiting for `user`, oldest first. Nothing is removed.
    pub async fn read_inbox(&self, user: &str, limit: u32) -> Result<Vec<ChatMessage>, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached(
                "SELECT msg_id, sender, group_name, body, sent_at_ms FROM inbox \
                 WHERE recipient = $1 ORDER BY seq LIMIT $2",
            )
            .await?;
        let rows = conn.query(&stmt, &[&user, &i64::from(limit)]).await?;
        Ok(rows
            .iter()
            .map(|row| ChatMessage {
                id: MessageId(row.get(0)),
                from: row.get(1),
                to: match row.get::<_, Option<String>>(2) {
                    Some(group) => Recipient::Group(group),
                    None => Recipient::User(user.to_owned()),
                },
                text: row.get(3),
                sent_at_ms: row.get(4),
            })
            .collect())
    }

    /// Removes the given messages from `user`'s inbox. Returns how many were there.
    pub async fn confirm_inbox(&self, user: &str, ids: &[MessageId]) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let ids: Vec<Uuid> = ids.iter().map(|id| id.0).collect();
        let stmt = conn
            .prepare_cached("DELETE FROM inbox WHERE recipient = $1 AND msg_id = ANY($2)")
            .await?;
        Ok(conn.execute(&stmt, &[&user, &ids]).await?)
    }

    /// How many messages wait for `user`.
    pub async fn count_inbox(&self, user: &str) -> Result<u64, StoreError> {
        let conn = self.conn().await?;
        let stmt = conn
            .prepare_cached("SELECT count(*) FROM inbox WHERE recipient = $1")
            .await?;
        let count: i64 = conn.query_one(&stmt, &[&user]).await?.get(0);
        Ok(count.try_into().unwrap_or(0))
    }
}
