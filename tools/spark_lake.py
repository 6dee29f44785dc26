#!/usr/bin/env python3
"""spark_lake.py — reads a canmc Parquet folder (Hive partitions) with pyspark in local mode
and prints the answers docs/data-lake.md shows. Usage: SPARK=1 tools/setup-venv.sh; then
.venv/bin/python tools/spark_lake.py LAKE_FOLDER (needs Java 17)."""
import sys
from pyspark.sql import SparkSession, functions as F
spark = (SparkSession.builder.master("local[1]").appName("canmc-lake")
         .config("spark.sql.legacy.parquet.nanosAsLong", "true")
         .config("spark.ui.enabled", "false").getOrCreate())
spark.sparkContext.setLogLevel("ERROR")
df = spark.read.parquet(sys.argv[1])
df.printSchema()
frames = df.filter(F.col("event") == "frame")
frames.agg(F.count("*").alias("frames"), F.min("timestamp").alias("first_ns"),
           F.max("timestamp").alias("last_ns"),
           F.countDistinct("id", "extended").alias("ids"),
           F.sum(F.length("data")).alias("bytes")).show(truncate=False)
df.filter(F.col("event") != "frame").groupBy("event").agg(F.count("*").alias("rows"), F.sum("lost").alias("lost")).orderBy("event").show()
df.groupBy("date", "hour").count().orderBy("date", "hour").show()
frames.groupBy("id", "extended").count().orderBy(F.desc("count"), "id").show(3)
spark.stop()
