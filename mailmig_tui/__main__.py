from mailmig_tui.cli import run

run()
