"""The report: the recall table judged on the held-out watches beside the baselines (most
popular, item-kNN, ALS), the example-age effect, the HTML page and the console summary."""
