"""Receipt printer and cash drawer: ESC/POS bytes out, real status in, durable print jobs.

python-escpos is imported only where bytes are built or a profile is checked, each time after
`escpos_cache.use_shared_cache()`: a daemon without a printer never loads it.
"""
