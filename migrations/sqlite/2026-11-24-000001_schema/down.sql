DROP TABLE revoked_tokens;
DROP TABLE jobs;
DROP TABLE market_embeddings;
DROP TABLE vector_index;
DROP TABLE markets_search;
DROP TABLE markets;
DROP TABLE users;
