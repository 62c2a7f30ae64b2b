-- Schemas and data for the semantic (L3) query-pair corpora (equivalent.yaml, near_miss.yaml).
--
-- Idempotent: drops and recreates the schemas qc_sem (a small shop) and qc_tpch (TPC-H tables at a
-- tiny scale). Every value is derived from generate_series by arithmetic: no random(), no now(),
-- so every run produces the same rows and every corpus pair keeps its verified outcome.
-- Designed-in properties the near-miss pairs rely on:
--   * customers 181..200 have no orders, products 111..120 were never ordered (INNER vs LEFT JOIN);
--     TPC-H customers whose c_custkey is a multiple of 3 have no orders (as in the specification);
--   * nullable columns with some NULLs: customers.email, customers.credit_limit, customers.referred_by,
--     products.brand, products.weight_kg, orders.shipped_at, orders.coupon_code, order_items.discount,
--     sales.customer_id, sales.rep_name;
--   * many duplicated values (country, city, segment, category, status, channel, ...) for DISTINCT.
-- The whole file runs in well under a second.

SET client_min_messages = warning;

BEGIN;

DROP SCHEMA IF EXISTS qc_sem CASCADE;
CREATE SCHEMA qc_sem;
DROP SCHEMA IF EXISTS qc_tpch CASCADE;
CREATE SCHEMA qc_tpch;

-- A deterministic scrambler for picking values with uneven frequencies (dropped at the end):
-- plain i % n would make every group the same size, and near-miss pairs such as
-- COUNT(*) ... WHERE status = 'pending' vs 'cancelled' would then return the same count.
CREATE FUNCTION qc_sem.mix(i bigint, salt integer, n integer) RETURNS integer
LANGUAGE sql IMMUTABLE AS $$ SELECT (((i * i * (31 + 2 * salt) + i * (17 + 6 * salt) + 7 * salt) % 1009) % n)::integer $$;

-- ---------------------------------------------------------------------------------------------
-- qc_sem: a shop
-- ---------------------------------------------------------------------------------------------

CREATE TABLE qc_sem.customers (
    id           integer PRIMARY KEY,
    name         text NOT NULL,
    email        text,
    country      text NOT NULL,
    city         text NOT NULL,
    segment      text NOT NULL,
    signup_date  date NOT NULL,
    credit_limit numeric(10,2),
    is_active    boolean NOT NULL,
    referred_by  integer
);

INSERT INTO qc_sem.customers
SELECT i,
       (ARRAY['Alice','Bruno','Chloe','David','Emma','Felix','Greta','Hugo','Ines','Jonas',
              'Karin','Liam','Mia','Noah','Olga','Paul','Quinn','Rosa','Sven','Tara'])[1 + i % 20]
         || ' ' ||
       (ARRAY['Martin','Schmidt','Smith','Garcia','Rossi','Jansen','Tanaka','Dubois','Weber','Brown',
              'Lopez','Bianchi','Visser','Sato','Moreau','Fischer','Jones','Perez','Ricci','Bakker',
              'Ito','Bernard','Wagner','Taylor','Romero'])[1 + (i * 7) % 25],
       CASE WHEN i % 9 = 0 THEN NULL
            ELSE lower((ARRAY['alice','bruno','chloe','david','emma','felix','greta','hugo','ines','jonas',
                              'karin','liam','mia','noah','olga','paul','quinn','rosa','sven','tara'])[1 + i % 20])
                 || '.' || i || '@example.com' END,
       x.country,
       (CASE x.country WHEN 'FR' THEN ARRAY['Paris','Lyon','Paris'] WHEN 'DE' THEN ARRAY['Berlin','Munich','Hamburg']
                       WHEN 'US' THEN ARRAY['New York','Chicago','Austin'] WHEN 'GB' THEN ARRAY['London','Manchester','London']
                       WHEN 'ES' THEN ARRAY['Madrid','Barcelona','Madrid'] WHEN 'IT' THEN ARRAY['Rome','Milan','Milan']
                       WHEN 'NL' THEN ARRAY['Amsterdam','Rotterdam','Amsterdam'] ELSE ARRAY['Tokyo','Osaka','Tokyo'] END)
         [1 + qc_sem.mix(i, 2, 3)],
       (ARRAY['consumer','corporate','home_office','consumer','consumer','corporate'])[1 + qc_sem.mix(i, 3, 6)],
       DATE '2022-01-01' + (i * 53) % 900,
       CASE WHEN i % 7 = 0 THEN NULL ELSE 500 + ((i * 37) % 20) * 250 END,
       i % 5 <> 0,
       CASE WHEN i % 4 = 0 AND i > 10 THEN i - 10 END
FROM generate_series(1, 200) AS g(i)
CROSS JOIN LATERAL (SELECT (ARRAY['FR','DE','US','GB','ES','IT','NL','JP','US','FR','DE','GB','US'])
                               [1 + qc_sem.mix(i, 1, 13)] AS country) AS x;

CREATE TABLE qc_sem.products (
    id           integer PRIMARY KEY,
    name         text NOT NULL,
    category     text NOT NULL,
    brand        text,
    price        numeric(10,2) NOT NULL,
    cost         numeric(10,2) NOT NULL,
    stock        integer NOT NULL,
    weight_kg    numeric(6,2),
    discontinued boolean NOT NULL,
    released_on  date NOT NULL
);

INSERT INTO qc_sem.products
SELECT i,
       (ARRAY['Widget','Gadget','Lamp','Chair','Novel','Puzzle','Kettle','Racket','Hose','Cable'])[1 + i % 10]
         || ' ' || (ARRAY['Pro','Mini','Max','Lite','Plus'])[1 + (i / 10) % 5] || ' ' || i,
       (ARRAY['electronics','books','toys','garden','kitchen','sports','electronics','kitchen'])[1 + qc_sem.mix(i, 4, 8)],
       CASE WHEN i % 11 = 0 THEN NULL
            ELSE (ARRAY['Acme','Globex','Initech','Umbrella','Stark','Acme'])[1 + qc_sem.mix(i, 5, 6)] END,
       (5 + (i * 37) % 200 + (i % 4) * 0.25)::numeric(10,2),
       ((5 + (i * 37) % 200 + (i % 4) * 0.25) * 0.6)::numeric(10,2),
       (i * 53) % 300,
       CASE WHEN i % 8 = 0 THEN NULL ELSE (0.5 + (i * 17) % 40 * 0.25)::numeric(6,2) END,
       i % 13 = 0,
       DATE '2021-06-01' + (i * 41) % 1000
FROM generate_series(1, 120) AS g(i);

CREATE TABLE qc_sem.orders (
    id           integer PRIMARY KEY,
    customer_id  integer NOT NULL REFERENCES qc_sem.customers (id),
    status       text NOT NULL,
    channel      text NOT NULL,
    created_at   timestamp NOT NULL,
    shipped_at   timestamp,
    coupon_code  text,
    priority     integer NOT NULL,
    total        numeric(10,2) NOT NULL DEFAULT 0
);

INSERT INTO qc_sem.orders (id, customer_id, status, channel, created_at, shipped_at, coupon_code, priority)
SELECT i,
       1 + qc_sem.mix(i, 6, 180),
       st,
       (ARRAY['web','web','mobile','store','web','mobile'])[1 + qc_sem.mix(i, 7, 6)],
       ts,
       CASE WHEN st IN ('pending', 'cancelled') THEN NULL ELSE ts + (1 + i % 6) * INTERVAL '1 day' END,
       CASE WHEN i % 6 = 0 THEN 'SAVE10' WHEN i % 15 = 1 THEN 'WELCOME' END,
       1 + qc_sem.mix(i, 8, 5)
FROM generate_series(1, 1200) AS g(i)
CROSS JOIN LATERAL (
    SELECT (ARRAY['pending','shipped','delivered','delivered','delivered','cancelled','returned','shipped',
                  'delivered','pending','shipped'])[1 + qc_sem.mix(i, 9, 11)] AS st,
           TIMESTAMP '2023-01-01' + ((i * 613) % 730) * INTERVAL '1 day'
               + (CASE WHEN i % 10 = 0 THEN 0 ELSE (i * 7919) % 86400 END) * INTERVAL '1 second' AS ts
) AS x;

CREATE TABLE qc_sem.order_items (
    id           integer PRIMARY KEY,
    order_id     integer NOT NULL REFERENCES qc_sem.orders (id),
    product_id   integer NOT NULL REFERENCES qc_sem.products (id),
    quantity     integer NOT NULL,
    unit_price   numeric(10,2) NOT NULL,
    discount     numeric(4,2)
);

INSERT INTO qc_sem.order_items
SELECT row_number() OVER (ORDER BY o.i, k.k),
       o.i,
       x.product_id,
       1 + qc_sem.mix(o.i * 5 + k.k, 19, 6),
       p.price,
       CASE WHEN (o.i + k.k) % 4 = 0 THEN 0.10 WHEN (o.i + k.k) % 7 = 0 THEN 0.05
            WHEN (o.i + k.k) % 9 = 0 THEN NULL ELSE 0 END
FROM generate_series(1, 1200) AS o(i)
CROSS JOIN LATERAL generate_series(1, 1 + o.i % 5) AS k(k)
CROSS JOIN LATERAL (SELECT 1 + qc_sem.mix(o.i * 5 + k.k, 20, 110) AS product_id) AS x
JOIN qc_sem.products AS p ON p.id = x.product_id;

UPDATE qc_sem.orders AS o
SET total = t.total
FROM (SELECT order_id, sum(quantity * unit_price * (1 - coalesce(discount, 0)))::numeric(10,2) AS total
      FROM qc_sem.order_items GROUP BY order_id) AS t
WHERE t.order_id = o.id;

CREATE TABLE qc_sem.sales (
    id           integer PRIMARY KEY,
    sale_date    date NOT NULL,
    region       text NOT NULL,
    channel      text NOT NULL,
    customer_id  integer REFERENCES qc_sem.customers (id),
    product_id   integer NOT NULL REFERENCES qc_sem.products (id),
    quantity     integer NOT NULL,
    unit_price   numeric(10,2) NOT NULL,
    discount     numeric(4,2),
    amount       numeric(10,2) NOT NULL,
    rep_name     text
);

INSERT INTO qc_sem.sales
SELECT i,
       DATE '2023-01-01' + (i * 7) % 730,
       (ARRAY['north','south','east','west','central','north','west'])[1 + qc_sem.mix(i, 10, 7)],
       (ARRAY['web','mobile','store','store'])[1 + qc_sem.mix(i, 11, 4)],
       CASE WHEN i % 10 = 0 THEN NULL ELSE 1 + (i * 29) % 200 END,
       p.id,
       1 + (i * 7) % 10,
       p.price,
       CASE WHEN i % 5 = 0 THEN 0.15 WHEN i % 12 = 0 THEN NULL ELSE 0 END,
       ((1 + (i * 7) % 10) * p.price * (1 - CASE WHEN i % 5 = 0 THEN 0.15 ELSE 0 END))::numeric(10,2),
       CASE WHEN i % 8 = 0 THEN NULL ELSE (ARRAY['Anna','Ben','Carla','Dario','Eva','Frank','Anna'])[1 + qc_sem.mix(i, 12, 7)] END
FROM generate_series(1, 2000) AS g(i)
JOIN qc_sem.products AS p ON p.id = 1 + (i * 13) % 120;

-- ---------------------------------------------------------------------------------------------
-- qc_tpch: TPC-H tables (standard column names), tiny scale
-- ---------------------------------------------------------------------------------------------

CREATE TABLE qc_tpch.region (
    r_regionkey integer PRIMARY KEY,
    r_name      char(25) NOT NULL,
    r_comment   varchar(152)
);

INSERT INTO qc_tpch.region VALUES
    (0, 'AFRICA', 'lar deposits. blithely final packages cajole'),
    (1, 'AMERICA', 'hs use ironic, even requests'),
    (2, 'ASIA', 'ges. thinly even pinto beans ca'),
    (3, 'EUROPE', 'ly final courts cajole furiously final excuse'),
    (4, 'MIDDLE EAST', 'uickly special accounts cajole carefully blithely close requests');

CREATE TABLE qc_tpch.nation (
    n_nationkey integer PRIMARY KEY,
    n_name      char(25) NOT NULL,
    n_regionkey integer NOT NULL REFERENCES qc_tpch.region (r_regionkey),
    n_comment   varchar(152)
);

INSERT INTO qc_tpch.nation (n_nationkey, n_name, n_regionkey, n_comment)
SELECT k, n, r, 'nation ' || k
FROM (VALUES (0, 'ALGERIA', 0), (1, 'ARGENTINA', 1), (2, 'BRAZIL', 1), (3, 'CANADA', 1), (4, 'EGYPT', 4),
             (5, 'ETHIOPIA', 0), (6, 'FRANCE', 3), (7, 'GERMANY', 3), (8, 'INDIA', 2), (9, 'INDONESIA', 2),
             (10, 'IRAN', 4), (11, 'IRAQ', 4), (12, 'JAPAN', 2), (13, 'JORDAN', 4), (14, 'KENYA', 0),
             (15, 'MOROCCO', 0), (16, 'MOZAMBIQUE', 0), (17, 'PERU', 1), (18, 'CHINA', 2), (19, 'ROMANIA', 3),
             (20, 'SAUDI ARABIA', 4), (21, 'VIETNAM', 2), (22, 'RUSSIA', 3), (23, 'UNITED KINGDOM', 3),
             (24, 'UNITED STATES', 1)) AS v(k, n, r);

CREATE TABLE qc_tpch.supplier (
    s_suppkey   integer PRIMARY KEY,
    s_name      char(25) NOT NULL,
    s_address   varchar(40) NOT NULL,
    s_nationkey integer NOT NULL REFERENCES qc_tpch.nation (n_nationkey),
    s_phone     char(15) NOT NULL,
    s_acctbal   numeric(15,2) NOT NULL,
    s_comment   varchar(101) NOT NULL
);

INSERT INTO qc_tpch.supplier
SELECT i,
       'Supplier#' || lpad(i::text, 9, '0'),
       'addr ' || (i * 7919) % 10007,
       (i * 7) % 25,
       lpad((10 + (i * 7) % 25)::text, 2, '0') || '-' || lpad(((i * 331) % 900 + 100)::text, 3, '0')
           || '-' || lpad(((i * 113) % 900 + 100)::text, 3, '0') || '-' || lpad(((i * 71) % 9000 + 1000)::text, 4, '0'),
       (-999.99 + ((i * i * 7331 + i * 131) % 1099999) / 100.0)::numeric(15,2),
       CASE WHEN i % 9 = 0 THEN 'Customer Complaints about late deliveries' ELSE 'regular supplier ' || i END
FROM generate_series(1, 40) AS g(i);

CREATE TABLE qc_tpch.part (
    p_partkey     integer PRIMARY KEY,
    p_name        varchar(55) NOT NULL,
    p_mfgr        char(25) NOT NULL,
    p_brand       char(10) NOT NULL,
    p_type        varchar(25) NOT NULL,
    p_size        integer NOT NULL,
    p_container   char(10) NOT NULL,
    p_retailprice numeric(15,2) NOT NULL,
    p_comment     varchar(23) NOT NULL
);

INSERT INTO qc_tpch.part
SELECT i,
       (ARRAY['almond','azure','blush','chocolate','forest','green','ivory','lime','navy','olive'])[1 + i % 10]
         || ' ' || (ARRAY['antique','burnished','drab','frosted','metallic','powder','rose','spring'])[1 + (i * 3) % 8]
         || ' ' || (ARRAY['cream','cyan','khaki','linen','peach','smoke','tan'])[1 + (i * 7) % 7],
       'Manufacturer#' || (1 + i % 5),
       'Brand#' || (1 + i % 5) || (1 + (i / 5) % 5),
       (ARRAY['STANDARD','SMALL','MEDIUM','LARGE','ECONOMY','PROMO'])[1 + qc_sem.mix(i, 17, 6)]
         || ' ' || (ARRAY['ANODIZED','BURNISHED','PLATED','POLISHED','BRUSHED'])[1 + (i * 3) % 5]
         || ' ' || (ARRAY['TIN','NICKEL','BRASS','STEEL','COPPER'])[1 + (i * 7) % 5],
       1 + (i * 7) % 50,
       (ARRAY['SM','MED','LG','JUMBO','WRAP'])[1 + i % 5] || ' '
         || (ARRAY['CASE','BOX','BAG','JAR','PKG','PACK','CAN','DRUM'])[1 + (i * 3) % 8],
       ((90000 + ((i / 10) % 20001) + 100 * (i % 1000)) / 100.0)::numeric(15,2),
       'part comment ' || i
FROM generate_series(1, 200) AS g(i);

CREATE TABLE qc_tpch.partsupp (
    ps_partkey    integer NOT NULL REFERENCES qc_tpch.part (p_partkey),
    ps_suppkey    integer NOT NULL REFERENCES qc_tpch.supplier (s_suppkey),
    ps_availqty   integer NOT NULL,
    ps_supplycost numeric(15,2) NOT NULL,
    ps_comment    varchar(199) NOT NULL,
    PRIMARY KEY (ps_partkey, ps_suppkey)
);

INSERT INTO qc_tpch.partsupp
SELECT p, 1 + (p + k * 10) % 40,
       1 + (p * 37 + k * 1009) % 9999,
       (1 + (p * 53 + k * 311) % 100000 / 100.0)::numeric(15,2),
       'partsupp ' || p || '-' || k
FROM generate_series(1, 200) AS g(p), generate_series(0, 3) AS h(k);

CREATE TABLE qc_tpch.customer (
    c_custkey    integer PRIMARY KEY,
    c_name       varchar(25) NOT NULL,
    c_address    varchar(40) NOT NULL,
    c_nationkey  integer NOT NULL REFERENCES qc_tpch.nation (n_nationkey),
    c_phone      char(15) NOT NULL,
    c_acctbal    numeric(15,2) NOT NULL,
    c_mktsegment char(10) NOT NULL,
    c_comment    varchar(117) NOT NULL
);

INSERT INTO qc_tpch.customer
SELECT i,
       'Customer#' || lpad(i::text, 9, '0'),
       'street ' || (i * 4391) % 10007,
       qc_sem.mix(i, 18, 25),
       lpad((10 + (i * 3) % 25)::text, 2, '0') || '-' || lpad(((i * 211) % 900 + 100)::text, 3, '0')
           || '-' || lpad(((i * 97) % 900 + 100)::text, 3, '0') || '-' || lpad(((i * 53) % 9000 + 1000)::text, 4, '0'),
       (-999.99 + ((i * i * 9241 + i * 577) % 1099999) / 100.0)::numeric(15,2),
       (ARRAY['AUTOMOBILE','BUILDING','FURNITURE','HOUSEHOLD','MACHINERY'])[1 + qc_sem.mix(i, 13, 5)],
       'customer comment ' || i
FROM generate_series(1, 150) AS g(i);

CREATE TABLE qc_tpch.orders (
    o_orderkey      integer PRIMARY KEY,
    o_custkey       integer NOT NULL REFERENCES qc_tpch.customer (c_custkey),
    o_orderstatus   char(1) NOT NULL,
    o_totalprice    numeric(15,2) NOT NULL,
    o_orderdate     date NOT NULL,
    o_orderpriority char(15) NOT NULL,
    o_clerk         char(15) NOT NULL,
    o_shippriority  integer NOT NULL,
    o_comment       varchar(79) NOT NULL
);

CREATE TABLE qc_tpch.lineitem (
    l_orderkey      integer NOT NULL REFERENCES qc_tpch.orders (o_orderkey),
    l_partkey       integer NOT NULL REFERENCES qc_tpch.part (p_partkey),
    l_suppkey       integer NOT NULL REFERENCES qc_tpch.supplier (s_suppkey),
    l_linenumber    integer NOT NULL,
    l_quantity      numeric(15,2) NOT NULL,
    l_extendedprice numeric(15,2) NOT NULL,
    l_discount      numeric(15,2) NOT NULL,
    l_tax           numeric(15,2) NOT NULL,
    l_returnflag    char(1) NOT NULL,
    l_linestatus    char(1) NOT NULL,
    l_shipdate      date NOT NULL,
    l_commitdate    date NOT NULL,
    l_receiptdate   date NOT NULL,
    l_shipinstruct  char(25) NOT NULL,
    l_shipmode      char(10) NOT NULL,
    l_comment       varchar(44) NOT NULL,
    PRIMARY KEY (l_orderkey, l_linenumber)
);

-- Orders first with a placeholder status and total; both are derived from the line items below.
INSERT INTO qc_tpch.orders
SELECT i,
       CASE WHEN c % 3 = 0 THEN c + 1 ELSE c END,
       'O',
       0,
       DATE '1992-01-01' + (i * 17) % 2400,
       (ARRAY['1-URGENT','2-HIGH','3-MEDIUM','4-NOT SPECIFIED','5-LOW'])[1 + qc_sem.mix(i, 14, 5)],
       'Clerk#' || lpad((1 + (i * 7) % 50)::text, 9, '0'),
       0,
       CASE WHEN i % 13 = 0 THEN 'handle special requests carefully' ELSE 'order comment ' || i END
FROM generate_series(1, 1500) AS g(i)
CROSS JOIN LATERAL (SELECT 1 + (i * 7) % 149 AS c) AS x;

INSERT INTO qc_tpch.lineitem
SELECT o.o_orderkey,
       pk,
       1 + (pk + ((o.o_orderkey + k) % 4) * 10) % 40,
       k,
       qty,
       qty * p.p_retailprice,
       ((o.o_orderkey + k) % 11) / 100.0,
       ((o.o_orderkey + k) % 9) / 100.0,
       CASE WHEN ship + 1 + (o.o_orderkey + k * 2) % 30 <= DATE '1995-06-17'
            THEN (ARRAY['R','A'])[1 + (o.o_orderkey + k) % 2] ELSE 'N' END,
       CASE WHEN ship > DATE '1995-06-17' THEN 'O' ELSE 'F' END,
       ship,
       o.o_orderdate + 30 + (o.o_orderkey + k) % 61,
       ship + 1 + (o.o_orderkey + k * 2) % 30,
       (ARRAY['DELIVER IN PERSON','COLLECT COD','NONE','TAKE BACK RETURN'])[1 + qc_sem.mix(o.o_orderkey * 7 + k, 16, 4)],
       (ARRAY['REG AIR','AIR','RAIL','SHIP','TRUCK','MAIL','FOB'])[1 + qc_sem.mix(o.o_orderkey * 7 + k, 15, 7)],
       'line ' || o.o_orderkey || '-' || k
FROM qc_tpch.orders AS o
CROSS JOIN LATERAL generate_series(1, 1 + (o.o_orderkey * 3) % 7) AS g(k)
CROSS JOIN LATERAL (SELECT 1 + (o.o_orderkey * 13 + k * 29) % 200 AS pk,
                           (1 + (o.o_orderkey * k * 7 + k) % 50)::numeric(15,2) AS qty,
                           o.o_orderdate + 1 + (o.o_orderkey * k) % 121 AS ship) AS x
JOIN qc_tpch.part AS p ON p.p_partkey = x.pk;

UPDATE qc_tpch.orders AS o
SET o_totalprice = t.total,
    o_orderstatus = t.status
FROM (SELECT l_orderkey,
             sum(l_extendedprice * (1 + l_tax) * (1 - l_discount))::numeric(15,2) AS total,
             CASE WHEN bool_and(l_linestatus = 'F') THEN 'F' WHEN bool_and(l_linestatus = 'O') THEN 'O' ELSE 'P' END
                 AS status
      FROM qc_tpch.lineitem GROUP BY l_orderkey) AS t
WHERE t.l_orderkey = o.o_orderkey;

DROP FUNCTION qc_sem.mix(bigint, integer, integer);

COMMIT;

ANALYZE qc_sem.customers, qc_sem.products, qc_sem.orders, qc_sem.order_items, qc_sem.sales,
        qc_tpch.region, qc_tpch.nation, qc_tpch.supplier, qc_tpch.part, qc_tpch.partsupp,
        qc_tpch.customer, qc_tpch.orders, qc_tpch.lineitem;
