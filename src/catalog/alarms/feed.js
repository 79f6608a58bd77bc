// hearth answers the alarms feeds in the controller (its built-in scheduler keeps the
// schedules): an invocation of /whisk.system/alarms/{alarm,once,interval} never runs this.
function main(params) {
  return { error: 'the alarms feeds are built into the hearth controller; invoke them through its API' };
}
