# Install layout and CPack packages (`make package`).
#
# Components, each its own package:
#   runtime -> dingo      binaries, man pages, /etc/dingo/dingo.toml (a conffile), systemd
#                         units, tmpfiles.d, examples, docs, Prometheus rules and a Grafana
#                         board; maintainer scripts create the dingo user and its directories.
#   dev     -> dingo-dev  libdingo-nsclient.a, its headers and dingo-nsclient.pc (the
#                         nsclient/ install rules add them with COMPONENT dev).
# Included at the end of the top-level CMakeLists.txt, after every install() rule, so the
# component list is complete. The layout is the Debian one: the package's prefix is /usr,
# the config lives in /etc, units in /lib/systemd/system (bookworm's place for them).

include(GNUInstallDirs)

set(DINGO_PKG_DIR ${PROJECT_SOURCE_DIR}/packaging)
set(DINGO_PACKAGE_MAINTAINER "dingo maintainers <maintainers@users.noreply.r-seed-7d6932e1.example>"
    CACHE STRING "Maintainer field of the packages and their changelog")
set(DINGO_PACKAGE_RELEASE "" CACHE STRING
    "Debian revision appended to the version (empty: a native package, version = project version)")

# ---- files of the runtime component ------------------------------------------------

# The config: absolute destinations, so they land in /etc and /lib whatever the prefix.
install(FILES ${DINGO_PKG_DIR}/dingo.toml DESTINATION /etc/dingo COMPONENT runtime)
install(FILES ${DINGO_PKG_DIR}/systemd/dingo.service ${DINGO_PKG_DIR}/systemd/dingo-watchdog.service
              ${DINGO_PKG_DIR}/systemd/dingo.socket
        DESTINATION /lib/systemd/system COMPONENT runtime)
install(FILES ${DINGO_PKG_DIR}/tmpfiles.d/dingo.conf DESTINATION lib/tmpfiles.d
        COMPONENT runtime)
install(PROGRAMS ${DINGO_PKG_DIR}/dingo-watchdog-restart DESTINATION ${CMAKE_INSTALL_LIBEXECDIR}/dingo
        COMPONENT runtime)

# Alerting rules and the Grafana board, for the monitoring hosts to load (runbook,
# "Alerts and the Grafana board").
install(FILES ${DINGO_PKG_DIR}/prometheus/dingo.rules.yml DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/dingo/prometheus
        COMPONENT runtime)
install(FILES ${DINGO_PKG_DIR}/grafana/dingo.json DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/dingo/grafana
        COMPONENT runtime)

# Man pages: every man/NAME.SECTION, gzipped (-n: no time stamp, so builds are
# reproducible). A page added later (dingo-nsclient.1) is picked up by the glob.
file(GLOB DINGO_MAN_PAGES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/man/*.[1-8])
set(DINGO_MAN_GZ)
foreach(page ${DINGO_MAN_PAGES})
  get_filename_component(name ${page} NAME)
  string(REGEX REPLACE ".*\\.([1-8])$" "\\1" section ${name})
  set(gz ${PROJECT_BINARY_DIR}/man/${name}.gz)
  add_custom_command(OUTPUT ${gz}
                     COMMAND ${CMAKE_COMMAND} -E make_directory ${PROJECT_BINARY_DIR}/man
                     COMMAND gzip -9n -c ${page} > ${gz}
                     DEPENDS ${page} VERBATIM)
  list(APPEND DINGO_MAN_GZ ${gz})
  install(FILES ${gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section} COMPONENT runtime)
endforeach()

# Docs: the runbook, the README, the examples; changelog and copyright, as Debian wants them.
set(DINGO_DOC_DIR ${CMAKE_INSTALL_DATAROOTDIR}/doc/dingo)
string(TIMESTAMP DINGO_CHANGELOG_DATE "%a, %d %b %Y %H:%M:%S +0000" UTC)  # honours SOURCE_DATE_EPOCH
set(DINGO_DEB_VERSION ${PROJECT_VERSION})
if(DINGO_PACKAGE_RELEASE)
  string(APPEND DINGO_DEB_VERSION "-${DINGO_PACKAGE_RELEASE}")
endif()
configure_file(${DINGO_PKG_DIR}/deb/changelog.in ${PROJECT_BINARY_DIR}/packaging/changelog @ONLY)
add_custom_command(OUTPUT ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   COMMAND gzip -9n -c ${PROJECT_BINARY_DIR}/packaging/changelog > ${PROJECT_BINARY_DIR}/packaging/changelog.gz
                   DEPENDS ${PROJECT_BINARY_DIR}/packaging/changelog VERBATIM)
add_custom_target(dingo-package-files ALL DEPENDS ${DINGO_MAN_GZ} ${PROJECT_BINARY_DIR}/packaging/changelog.gz)

if(DINGO_PACKAGE_RELEASE)
  set(DINGO_CHANGELOG_NAME changelog.Debian.gz)  # a non-native package
else()
  set(DINGO_CHANGELOG_NAME changelog.gz)
endif()
install(FILES ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${DINGO_DOC_DIR}
        RENAME ${DINGO_CHANGELOG_NAME} COMPONENT runtime)
install(FILES ${DINGO_PKG_DIR}/copyright DESTINATION ${DINGO_DOC_DIR} COMPONENT runtime)
install(FILES ${PROJECT_SOURCE_DIR}/docs/runbook.md ${PROJECT_SOURCE_DIR}/docs/auth.md ${PROJECT_SOURCE_DIR}/README.md
        DESTINATION ${DINGO_DOC_DIR} COMPONENT runtime)
install(FILES ${DINGO_PKG_DIR}/README.md DESTINATION ${DINGO_DOC_DIR} RENAME README.packaging.md
        COMPONENT runtime)
file(GLOB DINGO_EXAMPLES CONFIGURE_DEPENDS ${DINGO_PKG_DIR}/examples/*)
foreach(f ${DINGO_EXAMPLES})
  if(f MATCHES "\\.sh$" AND NOT f MATCHES "/lib\\.sh$")  # lib.sh is sourced, not run
    install(PROGRAMS ${f} DESTINATION ${DINGO_DOC_DIR}/examples COMPONENT runtime)
  else()
    install(FILES ${f} DESTINATION ${DINGO_DOC_DIR}/examples COMPONENT runtime)
  endif()
endforeach()

# ---- CPack -------------------------------------------------------------------------

get_cmake_property(DINGO_COMPONENTS COMPONENTS)
list(REMOVE_ITEM DINGO_COMPONENTS Unspecified)
if(dev IN_LIST DINGO_COMPONENTS)
  # Debian wants a copyright file and a changelog in every package's doc folder.
  install(FILES ${PROJECT_BINARY_DIR}/packaging/changelog.gz DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/dingo-dev
          RENAME ${DINGO_CHANGELOG_NAME} COMPONENT dev)
  install(FILES ${DINGO_PKG_DIR}/copyright DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/dingo-dev COMPONENT dev)
endif()
foreach(c ${DINGO_COMPONENTS})
  if(NOT c MATCHES "^(runtime|dev)$")
    message(FATAL_ERROR "install() component '${c}' has no package: use COMPONENT runtime or dev "
                        "(cmake/Packaging.cmake)")
  endif()
endforeach()

set(CPACK_PACKAGE_NAME dingo)
set(CPACK_PACKAGE_VENDOR "dingo")
set(CPACK_PACKAGE_CONTACT "${DINGO_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "realtime access layer: supervisor, gateway workers, watchdogs, CLI")
set(CPACK_PACKAGE_HOMEPAGE_URL "")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_OUTPUT_FILE_PREFIX ${PROJECT_BINARY_DIR}/packages)
set(CPACK_COMPONENTS_ALL ${DINGO_COMPONENTS})
set(CPACK_COMPONENTS_GROUPING IGNORE)  # one package per component
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_RPM_COMPONENT_INSTALL ON)

set(CPACK_GENERATOR DEB)
find_program(RPMBUILD_PROGRAM rpmbuild)
if(RPMBUILD_PROGRAM)
  list(APPEND CPACK_GENERATOR RPM)
endif()

# Debian. dpkg-shlibdeps computes the library dependencies of the binaries.
set(CPACK_DEBIAN_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_DEBIAN_PACKAGE_RELEASE ${DINGO_PACKAGE_RELEASE})
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION net)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
set(CPACK_DEBIAN_COMPRESSION_TYPE xz)

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME dingo)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_DEPENDS "adduser")
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SUGGESTS "jq, curl")
set(CPACK_COMPONENT_RUNTIME_DESCRIPTION
    "A supervisor accepts TCP connections and hands each to a gateway worker\n\
process, which does TLS, HTTP/1.1, WebSocket, long-polling, SSE and REST\n\
and publish/subscribe with per-channel history, so clients resume exactly\n\
where they left off. An internal watchdog probes the workers; dingo-watchdog\n\
watches the supervisor. Operated with dingoctl: status, rolling reload,\n\
binary upgrade with no downtime, worker drain. Ships systemd units.")
configure_file(${DINGO_PKG_DIR}/deb/conffiles ${PROJECT_BINARY_DIR}/packaging/deb/conffiles COPYONLY)
foreach(script postinst prerm postrm)
  configure_file(${DINGO_PKG_DIR}/deb/${script} ${PROJECT_BINARY_DIR}/packaging/deb/${script} COPYONLY)
endforeach()
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA
    ${PROJECT_BINARY_DIR}/packaging/deb/conffiles ${PROJECT_BINARY_DIR}/packaging/deb/postinst
    ${PROJECT_BINARY_DIR}/packaging/deb/prerm ${PROJECT_BINARY_DIR}/packaging/deb/postrm)

set(CPACK_DEBIAN_DEV_PACKAGE_NAME dingo-dev)
set(CPACK_DEBIAN_DEV_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEV_PACKAGE_DEPENDS "libc-ares-dev, libsqlite3-dev, libssl-dev")
set(CPACK_COMPONENT_DEV_DESCRIPTION
    "libdingo-nsclient finds a live dingo gateway for a client: primary and\n\
backup DNS domains, a SQLite list of endpoints refreshed from /v1/nodes and\n\
seed endpoints, raced in order, with TLS verified against the service name.\n\
This package holds the static library, its headers and dingo-nsclient.pc.")

# RPM, when rpmbuild is installed: the same components and the same scripts' jobs.
set(CPACK_RPM_PACKAGE_LICENSE "All rights reserved")
set(CPACK_RPM_PACKAGE_GROUP "System Environment/Daemons")
set(CPACK_RPM_FILE_NAME RPM-DEFAULT)
set(CPACK_RPM_RUNTIME_PACKAGE_NAME dingo)
set(CPACK_RPM_DEV_PACKAGE_NAME dingo-devel)
set(CPACK_RPM_RUNTIME_PACKAGE_REQUIRES_PRE "shadow-utils")
set(CPACK_RPM_RUNTIME_USER_FILELIST "%config(noreplace) /etc/dingo/dingo.toml")
set(CPACK_RPM_RUNTIME_PRE_INSTALL_SCRIPT_FILE ${DINGO_PKG_DIR}/rpm/pre)
set(CPACK_RPM_RUNTIME_POST_INSTALL_SCRIPT_FILE ${DINGO_PKG_DIR}/rpm/post)
set(CPACK_RPM_RUNTIME_PRE_UNINSTALL_SCRIPT_FILE ${DINGO_PKG_DIR}/rpm/preun)
set(CPACK_RPM_RUNTIME_POST_UNINSTALL_SCRIPT_FILE ${DINGO_PKG_DIR}/rpm/postun)
set(CPACK_RPM_EXCLUDE_FROM_AUTO_FILELIST_ADDITION /etc/dingo /lib /lib/systemd /lib/systemd/system
    /usr/lib/tmpfiles.d /usr/libexec)

include(CPack)
