/* Random reads of whole multi-line records, each record prefetched AHEAD
 * records before it is read, with WORK steps of arithmetic and NOISE bytes
 * of streaming writes between records: the replay loop's access pattern
 * without its code (BENCHMARKS.md, sessions 15 and 16).
 *   cc -O2 slot_reads.c -o slot_reads
 *   taskset -c 0 ./slot_reads MB RECORD AHEAD WORK NOISE [BURST [MODE]]
 * e.g. `64 648 9 1000 2048`: 64 MB of 648-byte records (a replay slot),
 * prefetched nine ahead, ~1,000 multiplications and 2 KiB of writes a record.
 * Compare MB 64 with MB 1 (everything in cache); `HUGE=1` puts the
 * records on transparent huge pages. `ILP=1` makes the work independent
 * steps that fill the reorder buffer quickly, as the replay loop's do,
 * rather than one dependent chain.
 * BURST n > 1: every n records, the next n records are prefetched at once
 * at distance AHEAD (all their lines; with MODE 1 only the first line, and
 * each record's lines again AHEAD/2 before use), to see whether page walks
 * issued together overlap. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xmmintrin.h>
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void lines(char*r,size_t rec){for(uintptr_t l=(uintptr_t)r&~63;l<(uintptr_t)r+rec;l+=64)_mm_prefetch((char*)l,_MM_HINT_T0);}
int main(int argc,char**argv){
  if(argc<6){fprintf(stderr,"usage: %s MB RECORD AHEAD WORK NOISE [BURST [MODE]]\n",argv[0]);return 2;}
  size_t mb=atoi(argv[1]); size_t rec=atoi(argv[2]); int ahead=atoi(argv[3]);
  int work=atoi(argv[4]); size_t noise=atoi(argv[5]);
  int burst=argc>6?atoi(argv[6]):1, mode=argc>7?atoi(argv[7]):0, ilp=getenv("ILP")!=NULL;
  size_t sz=mb<<20, n=1<<20, records=sz/rec;
  char*p=mmap(0,sz+(2<<20),PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0);
  p=(char*)(((uintptr_t)p+(2<<20)-1)&~((uintptr_t)(2<<20)-1));
  if(getenv("HUGE")) madvise(p,sz,MADV_HUGEPAGE);
  for(size_t i=0;i<sz;i+=64)p[i]=(char)i;
  size_t ring=1<<20; char*buf=malloc(ring+noise); size_t pos=0;
  uint32_t*idx=malloc((n+256)*4); uint64_t x=88172645463325252ULL;
  for(size_t i=0;i<n+256;i++){x^=x<<13;x^=x>>7;x^=x<<17;idx[i]=x%records;}
  uint64_t acc=1;
  double t0=now();
  for(size_t i=0;i<n;i++){
    if(ahead && burst<=1) lines(p+(size_t)idx[i+ahead]*rec,rec);
    else if(ahead){
      if(i%burst==0) for(int b=0;b<burst;b++){
        char*r=p+(size_t)idx[i+ahead+b]*rec;
        if(mode==1) _mm_prefetch(r,_MM_HINT_T0); else lines(r,rec);
      }
      if(mode==1) lines(p+(size_t)idx[i+ahead/2]*rec,rec);
    }
    if(ilp){
      uint64_t a0=acc,a1=acc^1,a2=acc^2,a3=acc^3;
      for(int k=0;k<work;k++){a0+=k;a1^=a0;a2+=k^a1;a3^=k;__asm__ volatile(""::"r"(a0),"r"(a1),"r"(a2),"r"(a3));}
      acc=a0^a1^a2^a3;
    } else for(int k=0;k<work;k++) acc=acc*6364136223846793005ULL+1442695040888963407ULL;
    if(noise){memset(buf+pos,(int)acc,noise); pos=(pos+noise)&(ring-1);}
    char*r=p+(size_t)idx[i]*rec;
    for(size_t o=0;o<rec;o+=64) acc+=(unsigned char)r[o];
  }
  double t1=now();
  printf("mb=%zu record=%zu ahead=%d work=%d noise=%zu burst=%d mode=%d ilp=%d: %.1f ns/record\n",mb,rec,ahead,work,noise,burst,mode,ilp,(t1-t0)/n*1e9);
  return (int)(acc&0);}
