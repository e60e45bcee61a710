-- The staff console finds shoppers by the start of their name (support at the counter: "Ivanova");
-- a prefix search on lower(name) uses this index instead of reading every customer.
CREATE INDEX customers_name_prefix ON customers (lower(name) text_pattern_ops) WHERE name IS NOT NULL;
