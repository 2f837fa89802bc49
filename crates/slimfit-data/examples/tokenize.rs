//! Tokenizes a sentence (or pair) with the default MiniLM checkpoint's WordPiece vocabulary.
//!
//! `cargo run --release -p slimfit-data --example tokenize -- "first sentence" ["second"]`

use slimfit_data::WordPieceTokenizer;
use slimfit_data::assets::MINILM_L6_V2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let text = args.next().ok_or("usage: tokenize <text> [text_pair]")?;
    let pair = args.next();
    let dir = MINILM_L6_V2.resolve(None)?;
    let tokenizer = WordPieceTokenizer::from_dir(&dir, 128)?;
    let encoded = tokenizer.encode(&text, pair.as_deref())?;
    println!("input_ids:      {:?}", encoded.input_ids);
    println!("token_type_ids: {:?}", encoded.token_type_ids);
    Ok(())
}
