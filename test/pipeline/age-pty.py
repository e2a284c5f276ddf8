# Runs the age CLI on a pseudo-terminal and types $AGE_PW at each passphrase prompt:
# Debian's age 1.1.1 reads passphrases only from a terminal. Usage: python3 age-pty.py -d -o out in.age
import os, pty, sys

pid, fd = pty.fork()
if pid == 0:
    os.execvp("age", ["age"] + sys.argv[1:])
pw = (os.environ["AGE_PW"] + "\n").encode()
seen = b""
answered = 0
while True:
    try:
        data = os.read(fd, 1024)
    except OSError:
        break
    if not data:
        break
    seen += data
    while seen.lower().count(b"passphrase") > answered:
        answered += 1
        os.write(fd, pw)
_, status = os.waitpid(pid, 0)
sys.stderr.write(seen.decode(errors="replace"))
sys.exit(os.waitstatus_to_exitcode(status))
