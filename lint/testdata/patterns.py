import hashlib
from datetime import datetime
import requests

def load_partition(df, table, partition_date):
    """Delete partition, then insert. Safe to retry."""
    with engine.begin() as conn:
        conn.execute(f"""
            DELETE FROM {table}
            WHERE partition_date = '{partition_date}'
        """)
        df.to_sql(table, conn, if_exists='append', index=False)

def bad_load(df):
    df.to_sql("orders", engine, if_exists='append')   # a retry duplicates
    today = datetime.now().date()
    with open("out.csv", "a") as f:
        f.write("x")
    cur.execute("INSERT INTO orders VALUES (%s, %s)", (1, 2))
    cur.execute("SELECT * FROM t WHERE id = %s" % oid)
    # datetime.now() in a comment is fine
    s = "datetime.now() in a string is fine"

def call_external_api(order_id, amount):
    idempotency_key = hashlib.sha256(f"{order_id}:{amount}".encode()).hexdigest()
    response = requests.post(
        "https://api.payment.com/charge",
        json={"order_id": order_id, "amount": amount},
        headers={"Idempotency-Key": idempotency_key}
    )
    return response

def charge(order_id):
    return requests.post("https://api/charge", json={"id": order_id})

def notify(user):
    smtp.sendmail("a@b", [user], "hi")

def notify_once(user):
    if not already_sent(user):
        smtp.sendmail("a@b", [user], "hi")
