//! Dynamic padding: a batch is padded to its own longest sequence, not to a fixed length.

use crate::tokenizer::Encoded;

/// A batch of encoded sequences, row-major `[batch_size, seq_len]` each, ready to become
/// tensors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaddedBatch {
    /// Number of sequences.
    pub batch_size: usize,
    /// Length of the longest sequence; shorter ones are padded up to it.
    pub seq_len: usize,
    /// Token ids, padding positions hold the pad id.
    pub input_ids: Vec<i64>,
    /// Segment ids, 0 at padding positions.
    pub token_type_ids: Vec<i64>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<i64>,
}

impl PaddedBatch {
    /// Pads `rows` to their longest length with `pad_id`.
    pub fn new(rows: &[Encoded], pad_id: u32) -> Self {
        let seq_len = rows.iter().map(|r| r.input_ids.len()).max().unwrap_or(0);
        let cells = rows.len() * seq_len;
        let mut batch = Self {
            batch_size: rows.len(),
            seq_len,
            input_ids: Vec::with_capacity(cells),
            token_type_ids: Vec::with_capacity(cells),
            attention_mask: Vec::with_capacity(cells),
        };
        for row in rows {
            let pad = seq_len - row.input_ids.len();
            batch
                .input_ids
                .extend(row.input_ids.iter().map(|&id| i64::from(id)));
            batch
                .input_ids
                .extend(std::iter::repeat_n(i64::from(pad_id), pad));
            batch
                .token_type_ids
                .extend(row.token_type_ids.iter().map(|&t| i64::from(t)));
            batch.token_type_ids.extend(std::iter::repeat_n(0, pad));
            batch
                .attention_mask
                .extend(std::iter::repeat_n(1, row.input_ids.len()));
            batch.attention_mask.extend(std::iter::repeat_n(0, pad));
        }
        batch
    }

    /// Number of real (non-padding) tokens in row `i`.
    pub fn row_len(&self, i: usize) -> usize {
        self.attention_mask[i * self.seq_len..(i + 1) * self.seq_len]
            .iter()
            .filter(|&&m| m == 1)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_to_longest_row_with_zero_mask() {
        let rows = [
            Encoded {
                input_ids: vec![101, 7, 102],
                token_type_ids: vec![0, 0, 0],
            },
            Encoded {
                input_ids: vec![101, 8, 102, 9, 102],
                token_type_ids: vec![0, 0, 0, 1, 1],
            },
        ];
        let batch = PaddedBatch::new(&rows, 0);
        assert_eq!((batch.batch_size, batch.seq_len), (2, 5));
        assert_eq!(
            batch.input_ids,
            vec![101, 7, 102, 0, 0, 101, 8, 102, 9, 102]
        );
        assert_eq!(batch.token_type_ids, vec![0, 0, 0, 0, 0, 0, 0, 0, 1, 1]);
        assert_eq!(batch.attention_mask, vec![1, 1, 1, 0, 0, 1, 1, 1, 1, 1]);
        assert_eq!((batch.row_len(0), batch.row_len(1)), (3, 5));
    }

    #[test]
    fn empty_batch_has_no_cells() {
        let batch = PaddedBatch::new(&[], 0);
        assert_eq!((batch.batch_size, batch.seq_len), (0, 0));
        assert!(batch.input_ids.is_empty());
    }
}
