"""The experiment record: what a finished (or interrupted) search is. Its folder and options
(record.py), the trial rows and result files (results.py), the confirmation's statistics
(confirmation.py, no Ray) and report.html (report.py). Read by confirm, report and --resume
without the pipeline that wrote it."""
