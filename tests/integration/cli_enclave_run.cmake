# `teemate enclave run` end to end: stdout comes through, main's return
# value is the exit status, and a missing image is a clear error.
execute_process(COMMAND ${TEEMATE} enclave run ${IMAGE} -- alpha beta
  OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "enclave run failed (${rc}): ${err}")
endif()
foreach(expected "Hello from inside the enclave!" "argv[1] = alpha" "argv[2] = beta")
  string(FIND "${out}" "${expected}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "missing '${expected}' in output:\n${out}")
  endif()
endforeach()
string(FIND "${err}" "WITHOUT confidentiality" pos)
if(pos EQUAL -1)
  message(FATAL_ERROR "the sim backend did not warn that it gives no confidentiality:\n${err}")
endif()
execute_process(COMMAND ${TEEMATE} enclave run ${IMAGE} -- fail RESULT_VARIABLE rc OUTPUT_QUIET ERROR_QUIET)
if(NOT rc EQUAL 3)
  message(FATAL_ERROR "expected main's return value 3 as exit status, got ${rc}")
endif()
execute_process(COMMAND ${TEEMATE} enclave run /nonexistent.tme RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
if(rc EQUAL 0)
  message(FATAL_ERROR "a missing image must fail")
endif()
# --wait takes seconds from 0 to 86400; "nan" (which a plain range check
# lets through) and negative values are usage errors.
foreach(bad nan -1 inf 90000)
  execute_process(COMMAND ${TEEMATE} enclave run --shared --wait ${bad} ${IMAGE}
    RESULT_VARIABLE rc ERROR_VARIABLE err OUTPUT_QUIET)
  if(NOT rc EQUAL 2)
    message(FATAL_ERROR "--wait ${bad} must be a usage error (exit 2), got ${rc}: ${err}")
  endif()
endforeach()
