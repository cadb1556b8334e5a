"""News sentiment: GDELT/RSS/file bronze, TextBlob + lexicon silver, FinBERT gold, as-of join."""
