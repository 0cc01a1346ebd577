-- PostgreSQL upsert: fine
INSERT INTO dim_customers (id, name, email, updated_at)
VALUES (%(id)s, %(name)s, %(email)s, %(updated_at)s)
ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name;

TRUNCATE staging_orders;
INSERT INTO staging_orders SELECT * FROM source;

MERGE INTO orders AS target USING staging_orders AS source ON target.order_id = source.order_id
WHEN MATCHED THEN UPDATE SET amount = source.amount
WHEN NOT MATCHED THEN INSERT (order_id, amount) VALUES (source.order_id, source.amount);

INSERT INTO events (id, at) VALUES (1, now());  -- two findings
INSERT INTO events (id, tag) VALUES (2, 'INSERT INTO x VALUES (1)'); /* INSERT INTO y */
CREATE TABLE t (id SERIAL PRIMARY KEY, body text);
CREATE TABLE m (id INT AUTO_INCREMENT PRIMARY KEY);
UPDATE orders SET loaded_at = CURRENT_TIMESTAMP, token = gen_random_uuid() WHERE id = 1;
COPY orders FROM '/tmp/o.csv' CSV;
DO $$ BEGIN INSERT INTO inside_dollar VALUES (1); END $$;
