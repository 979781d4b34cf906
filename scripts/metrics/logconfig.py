"""The log4j2 configuration mmsctl gives MMS's frontend (``--log-config``).

MMS 1.1.11's own ``log4j2.xml`` (inside ``model-server.jar``) writes the same
files; ours keeps their names and rotation (100 MB or daily, gzip, 5 kept) and
changes only what the exporter reads, so that the layout is ours, not guessed:

* ``access_log.log``, ``model_metrics.log``, ``mms_metrics.log``: each line starts
  with the event's time in Unix milliseconds (``%d{UNIX_MILLIS}``), then MMS's
  message: ``1764640000123 /127.0.0.1:50412 "POST /predictions/m HTTP/1.1" 200 12``;
* ``worker_state.log`` (new): the frontend's worker state changes, and only those
  (``W-9000-m State change WORKER_STARTED -> WORKER_MODEL_LOADED``): the one signal
  that a worker has really loaded its model (MMS's ``READY`` is a running thread).

``mms_log.log`` and ``model_log.log`` keep MMS's human layout. Unlike MMS's file, a
frontend line is written once to ``mms_log.log`` (MMS's logger and root both wrote it),
and the access and metrics lines only to their own files.
"""
import os
from xml.sax.saxutils import quoteattr

LOG_CONFIG_FILE = "log4j2.xml"

ACCESS_LOG = "access_log.log"
MODEL_METRICS_LOG = "model_metrics.log"
SERVER_METRICS_LOG = "mms_metrics.log"
WORKER_STATE_LOG = "worker_state.log"

#: the frontend class whose debug messages carry the worker state changes
WORKER_THREAD_LOGGER = "com.amazonaws.ml.mms.wlm.WorkerThread"

MACHINE_LAYOUT = "%d{UNIX_MILLIS} %m%n"
HUMAN_LAYOUT = "%d{ISO8601} [%-5p] %t %c - %m%n"
ROLL_SIZE = "100 MB"
#: another size for the rotation (e.g. "4 KB": tests rotate the logs of a real server)
ROLL_SIZE_ENV = "MMSCTL_LOG_ROLL_SIZE"
ROLL_KEEP = 5

_APPENDER = """        <RollingFile name={name} fileName={file} filePattern={pattern}>
            <PatternLayout pattern={layout}/>{filters}
            <Policies>
                <SizeBasedTriggeringPolicy size={size}/>
                <TimeBasedTriggeringPolicy/>
            </Policies>
            <DefaultRolloverStrategy max="{keep}"/>
        </RollingFile>
"""

_STATE_FILTER = """
            <RegexFilter regex=".*State change.*" onMatch="ACCEPT" onMismatch="DENY"/>"""


def _appender(name, log_dir, filename, layout, roll_size=ROLL_SIZE, filters=""):
    stem = filename[:-len(".log")]
    return _APPENDER.format(
        name=quoteattr(name), file=quoteattr(os.path.join(log_dir, filename)),
        pattern=quoteattr(os.path.join(log_dir, stem + ".%d{yyyy-MM-dd}-%i.log.gz")),
        layout=quoteattr(layout), size=quoteattr(roll_size), keep=ROLL_KEEP, filters=filters)


def render(log_dir, roll_size=ROLL_SIZE):
    """The log4j2 XML for a server whose logs go to ``log_dir`` (an absolute path)."""
    appenders = "".join([
        _appender("access_log", log_dir, ACCESS_LOG, MACHINE_LAYOUT, roll_size),
        _appender("model_log", log_dir, "model_log.log", HUMAN_LAYOUT, roll_size),
        _appender("model_metrics", log_dir, MODEL_METRICS_LOG, MACHINE_LAYOUT, roll_size),
        _appender("mms_log", log_dir, "mms_log.log", HUMAN_LAYOUT, roll_size),
        _appender("mms_metrics", log_dir, SERVER_METRICS_LOG, MACHINE_LAYOUT, roll_size),
        _appender("worker_state", log_dir, WORKER_STATE_LOG, "%d{UNIX_MILLIS} %m%n", roll_size, _STATE_FILTER),
    ])
    return """<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by mmsctl (mmsctl.metrics.logconfig): MMS 1.1.11's files, with layouts the exporter reads. -->
<Configuration>
    <Appenders>
        <Console name="STDOUT" target="SYSTEM_OUT">
            <PatternLayout pattern="%d{{ISO8601}} [%-5p] %t %c - %m%n"/>
        </Console>
{appenders}    </Appenders>
    <Loggers>
        <Logger name="ACCESS_LOG" level="info" additivity="false">
            <AppenderRef ref="access_log"/>
        </Logger>
        <Logger name="io.netty" level="error"/>
        <Logger name="MODEL_LOG" level="all" additivity="false">
            <AppenderRef ref="model_log"/>
        </Logger>
        <Logger name="MODEL_METRICS" level="all" additivity="false">
            <AppenderRef ref="model_metrics"/>
        </Logger>
        <Logger name="org.apache" level="off"/>
        <Logger name="{worker}" level="debug">
            <AppenderRef ref="worker_state"/>
        </Logger>
        <Logger name="com.amazonaws.ml.mms" level="debug" additivity="false">
            <AppenderRef ref="STDOUT"/>
            <AppenderRef ref="mms_log"/>
        </Logger>
        <Logger name="MMS_METRICS" level="all" additivity="false">
            <AppenderRef ref="mms_metrics"/>
        </Logger>
        <Root level="info">
            <AppenderRef ref="STDOUT"/>
            <AppenderRef ref="mms_log"/>
        </Root>
    </Loggers>
</Configuration>
""".format(appenders=appenders, worker=WORKER_THREAD_LOGGER)


def write(state_dir, roll_size=None):
    """Write ``<state_dir>/log4j2.xml`` for the logs in ``<state_dir>/logs``; return its path.

    A previous server's ``worker_state.log`` is removed: the exporter replays that file
    to know the workers' states, which must be this server's only."""
    roll_size = roll_size or os.environ.get(ROLL_SIZE_ENV) or ROLL_SIZE
    stale = os.path.join(state_dir, "logs", WORKER_STATE_LOG)
    if os.path.exists(stale):
        os.remove(stale)
    path = os.path.join(state_dir, LOG_CONFIG_FILE)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(render(os.path.join(os.path.abspath(state_dir), "logs"), roll_size))
    return path
