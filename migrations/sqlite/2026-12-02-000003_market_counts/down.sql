DROP TRIGGER markets_count_status_change;
DROP TRIGGER markets_count_delete;
DROP TRIGGER markets_count_insert;
DROP TABLE market_counts;
